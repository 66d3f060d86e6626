"""What the bench scripts share about runs they may be asked to start again."""
from __future__ import annotations

import json
from pathlib import Path


def finished(run_dir: Path) -> dict | None:
    """The report of a run that already wrote one, else None. A finished run is not run again
    (even where a newer deepzip would key its checkpoints differently), so a bench can be
    stopped and started at any point and only the missing runs are done."""
    path = Path(run_dir) / "report.json"
    return json.loads(path.read_text()) if path.is_file() else None
