"""What the README's run command does, as it does it: real processes, a fresh SQLite file,
the production settings (event hub on, full password hashing)."""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def flask(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_fresh_machine_migrates_loads_the_demo_and_the_ledger_verifies(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNICARD_")}
    env |= {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'omnicard.sqlite3'}",
        "OMNICARD_DEMO_FILE": str(tmp_path / "demo.json"),
        "OMNICARD_CARD_CODE_KEY": "a development key, as scripts/run makes one",
    }
    for step in (["db", "upgrade"], ["demo", "load"], ["demo", "load"], ["ledger", "verify"]):
        done = flask(*step, env=env)
        assert done.returncode == 0, (step, done.stdout, done.stderr)
    assert "ledger OK" in done.stdout
    demo = json.loads((tmp_path / "demo.json").read_text())
    assert len(demo["shoppers"]) == 3
    assert all(store["pos"]["secret"].startswith("ocd_") for store in demo["stores"])
