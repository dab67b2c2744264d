"""Where the real records of the three sources are (../shared/realdata, read in place, never copied)."""

from pathlib import Path

REAL = Path(__file__).resolve().parents[2] / "shared" / "realdata"
SOURCES = ("chatbot_arena", "debate", "multi_character_dialogue")


def source_dir_args(sources=SOURCES) -> list[str]:
    """``--source-dir NAME=PATH`` for each source, pointing the build at its real records."""
    return [arg for name in sources for arg in ("--source-dir", f"{name}={REAL / name}")]


def build_realdata(out: Path, *extra: str) -> Path:
    """Build every source's real records into ``out``, base columns only unless ``extra`` build flags say more."""
    from coord_bench.cli import main

    base_only = ["--annotate", "none", "--set", "output.report=false"]  # ``extra`` may turn layers on
    assert main(["build", "--no-progress", "--out", str(out), *source_dir_args(), *base_only, *extra]) == 0
    return out
