"""README's layout table names every module of the library, every job and every script, so a reader finds each
concern from it."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def layout_section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Layout\n")
    return text[start:text.index("\n## ", start + 1)]


def test_the_layout_table_names_every_module_job_and_script():
    named = {Path(token).name for token in re.findall(r"`([^`\n]+)`", layout_section())}
    files = [*(p for p in (ROOT / "sparkgmm").rglob("*.py") if p.name != "__init__.py"),
             *(ROOT / "jobs").glob("*.py"),
             *(p for p in (ROOT / "scripts").iterdir() if p.is_file())]
    assert ROOT / "sparkgmm" / "em.py" in files and ROOT / "jobs" / "fit_gmm.py" in files  # the tree was found
    missing = sorted(str(p.relative_to(ROOT)) for p in files if p.name not in named)
    assert not missing, f"README's layout table does not name {missing}"
