"""Run SQL in DuckDB with the Delta extension loaded, print the result as JSON lines.

Usage: python duckdb_delta.py "SELECT ... FROM delta_scan('/path/to/table') ..."

The extension comes from the PyPI package duckdb-ext-delta, which installs the extension file
under duckdb_ext/extensions/<version>/<platform>/; it is loaded from there, never downloaded.
"""

import importlib.util
import json
import pathlib
import sys

import duckdb


def delta_extension() -> pathlib.Path:
    spec = importlib.util.find_spec("duckdb_ext")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("duckdb-ext-delta is not installed: pip install -r .ci/requirements.txt")
    for root in spec.submodule_search_locations:
        found = sorted(pathlib.Path(root).glob(f"extensions/v{duckdb.__version__}/*/delta.duckdb_extension"))
        if found:
            return found[0]
    sys.exit(f"no delta extension for duckdb {duckdb.__version__} under {list(spec.submodule_search_locations)}")


def main() -> None:
    con = duckdb.connect()
    con.execute(f"LOAD '{delta_extension()}'")
    rel = con.sql(sys.argv[1])
    columns = rel.columns
    for row in rel.fetchall():
        print(json.dumps(dict(zip(columns, row)), default=str))


if __name__ == "__main__":
    main()
