"""report.html: self-contained, every section present, user strings escaped, runs compared."""
import json
import shutil
from html.parser import HTMLParser

import pytest
from typer.testing import CliRunner

import deepzip as dz
from deepzip.cli import app
from deepzip.pipeline import from_dict, run_recipe


class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.images, self.sections, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        if tag == "section":
            self.sections.append(attrs.get("id"))
        assert tag != "script"

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    r = from_dict({"model": "lenet300", "dataset": "synthetic", "dense": {"epochs": 2},
                   "prune": {"sparsity": 0.9, "steps": 2, "retrain": {"epochs": 1}},
                   "share": {"bits": 4, "finetune": {"epochs": 1}}})
    run_recipe(r, out, limit=512, progress=False, log=lambda *a: None)
    return out


def test_every_run_writes_a_self_contained_report(run_dir):
    text = (run_dir / "report.html").read_text()
    page = Page()
    page.feed(text)
    page.close()
    assert {"summary", "layers", "history", "distributions", "bars"} <= set(page.sections)
    assert len(page.images) == 3 and all(src.startswith("data:image/png;base64,") for src in page.images)
    assert "http://" not in text and "https://" not in text and "<link" not in text
    weights = json.loads((run_dir / "weights.json").read_text())
    assert list(weights) == ["dense", "pruned", "shared"]
    shared = weights["shared"]["fc1.weight"]
    assert len(shared["centroids"]) <= 15 and shared["zeros"] == pytest.approx(0.9 * shared["total"], rel=0.01)
    assert weights["dense"]["fc1.weight"]["edges"] == weights["shared"]["fc1.weight"]["edges"]  # one axis per layer


def test_user_strings_are_escaped_and_runs_compare_on_one_page(run_dir, tmp_path):
    other = tmp_path / "<b>evil & co</b>"
    shutil.copytree(run_dir, other)
    report = json.loads((other / "report.json").read_text())
    report["layers"][0]["layer"] = "<script>alert(1)</script>"
    (other / "report.json").write_text(json.dumps(report))
    result = CliRunner().invoke(app, ["report", str(run_dir), str(other), "--out", str(tmp_path / "both.html")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "both.html").read_text()
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "&lt;b&gt;evil &amp; co&lt;/b&gt;" in text
    page = Page()
    page.feed(text)
    assert "runs" in page.sections and page.sections.count("summary") == 2


def test_report_refuses_what_it_cannot_show(run_dir, tmp_path):
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["report", str(empty)])
    assert result.exit_code == 2 and "holds no report.json" in result.output
    other = tmp_path / "other"
    shutil.copytree(run_dir, other)
    report = json.loads((other / "report.json").read_text())
    report["dataset"] = "digits"
    (other / "report.json").write_text(json.dumps(report))
    result = runner.invoke(app, ["report", str(run_dir), str(other)])
    assert result.exit_code == 2 and "different data sets" in result.output
    with pytest.raises(dz.ConfigError):
        dz.report.write_report([], tmp_path / "x.html")
