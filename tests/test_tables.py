"""One table for every reader: the closed lists of the format and the runtime live in
src/deepzip/dzip/tables.toml, and Python's, C's and JavaScript's copies are generated from it."""
import shutil
import subprocess

import pytest

from deepzip.dzip import _tables, spec, tables
from deepzip.export import cgraph, cplan, oplist


def test_no_generated_file_is_stale():
    assert tables.stale() == [], "run: python src/deepzip/dzip/tables.py"


def test_python_reads_its_lists_from_the_table():
    t = tables.read_table()
    assert spec.STREAM_KEYS == tuple(r["name"] for r in t["stream_key"]["rows"])
    assert tuple(spec.DTYPES) == _tables.DTYPE_NAMES and spec.ENCODINGS == ("raw", "shared", "sparse")
    assert oplist.KINDS == {"conv": 1, "linear": 2, "pool": 3, "add": 4, "copy": 5, "affine": 6, "relu": 7, "softmax": 8}
    assert cgraph.POOL_KINDS["adaptive_max"] == 4 and cplan.FORMS == {"raw": 1, "shared": 2, "sparse": 3}


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc")
def test_c_numbers_every_row_as_python_does(tmp_path):
    """Each C constant, compiled, has the number NUMBERS gives its row."""
    t = tables.read_table()
    rows = [(tables.constant(lst, r["name"]), _tables.NUMBERS[key][r["name"]])
            for key, lst in t.items() for r in lst["rows"]]
    body = "\n".join(f'    printf("%d\\n", (int){c});' for c, _ in rows)
    (tmp_path / "n.c").write_text(f'#include <stdio.h>\n#include "dz_tables.h"\nint main(void) {{\n{body}\n    return 0;\n}}\n')
    subprocess.run(["gcc", "-std=c99", "-Wall", "-Werror", "-pedantic", "-I", str(tables.LIBDZIP / "include"),
                    str(tmp_path / "n.c"), "-o", str(tmp_path / "n")], check=True)
    out = subprocess.run([str(tmp_path / "n")], capture_output=True, text=True, check=True).stdout.split()
    assert [int(v) for v in out] == [n for _, n in rows]


def test_a_new_row_reaches_every_language(tmp_path):
    """A coder added to the table is a constant in C, a name in Python and JavaScript's lists stay whole."""
    (tmp_path / "include").mkdir()
    (tmp_path / "wasm").mkdir()
    shutil.copy(tables.LIBDZIP / "wasm" / "dzip.js", tmp_path / "wasm" / "dzip.js")
    text = tables.TABLE.read_text().replace('(version 4)" },\n', '(version 4)" },\n  { name = "zstd", doc = "a new coder" },\n')
    (tmp_path / "tables.toml").write_text(text)
    out = tables.outputs(tmp_path, tmp_path / "tables.toml", tmp_path / "_tables.py")
    header = out[tmp_path / "include" / "dz_tables.h"]
    assert "DZ__CONTEXT_LEFT,     /*" in header and "DZ__ZSTD," in header and '#define DZ__CODER_COUNT 6' in header
    assert "'zstd'" in out[tmp_path / "_tables.py"]
    js = out[tmp_path / "wasm" / "dzip.js"]
    assert js.count(tables.JS_BEGIN) == 1 and js.count(tables.JS_END) == 1 and "const ENCODINGS = [" in js
