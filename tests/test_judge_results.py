"""The judge's results (coord_bench/mappers/judge/results.py) with several judges and both A/B orders (fast fake
server): per-judge entries, the consensus, position consistency, inter-judge and ground-truth agreement."""

from __future__ import annotations

from judge_helpers import params, run_judge
from llm_server import FakeChatServer, judgement


def test_several_judges_consensus_agreement_and_both_orders(small_records, tmp_path):
    def responder(request):
        model = request["model"]
        if model == "judge-c":
            return judgement(success=2, level="none", efficiency=1, preferred="A")
        return judgement(success=8, level="full", efficiency=6, preferred="A")  # "A": whatever is shown first

    server = FakeChatServer(responder=responder, models=("judge-a", "judge-b", "judge-c")).start()
    try:
        models = ["judge-a", "judge-b", "judge-c"]
        p = params(tmp_path, server.base_url, models=models, both_orders=True, concurrency=4, max_calls=100)
        mapper, out = run_judge(p, small_records)
        arena = [r for r in out if r["source"] == "chatbot_arena"]
        assert server.received == len(models) * (2 * len(arena) + len(out) - len(arena))  # A/B swapped for arena
        for record in out:
            consensus = record["annotations"]["coordination"]["consensus"]
            assert consensus["n_judges"] == 3 and consensus["success_score"] == 8 and consensus["success"] is True
            assert consensus["agreement_level"] == "full" and consensus["efficiency_score"] == 6
            for judged in record["annotations"]["coordination"]["judges"]:
                if record["source"] == "chatbot_arena":
                    # always "A" = model_a first, then model_b when swapped: inconsistent, so a tie
                    assert judged["position_consistent"] is False and judged["preferred"] == "tie"
                    assert judged["calls"] == 2
                else:
                    assert judged["position_consistent"] is None and judged["preferred"] is None
        report = mapper.describe()
        assert report["agreement"]["position_consistency"]["judge-a"] == {
            "pairs": len(arena),
            "consistent": 0,
            "rate": 0.0,
        }
        pairs = {tuple(p["judges"]): p for p in report["agreement"]["inter_judge"]["pairs"]}
        assert pairs["judge-a", "judge-b"]["kappa_agreement_level"] == 1.0 and pairs["judge-a", "judge-b"]["n"] == 6
        alpha = report["agreement"]["inter_judge"]["krippendorff_alpha"]
        assert alpha["n_rows"] == 6 and alpha["agreement_level"] < 0.5  # judge-c disagrees on every row
        truth = report["agreement"]["ground_truth"]["consensus"]["arena_success_vs_decisive_winner"]
        assert truth["n"] == len(arena)
    finally:
        server.stop()
