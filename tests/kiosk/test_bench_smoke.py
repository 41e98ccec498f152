"""The suggestion benchmark still runs (at a tiny size, on SQLite, writing nothing)."""

from bench import kiosk_suggestions


def test_the_suggestion_benchmark_runs_at_a_tiny_size(tmp_path):
    doc = tmp_path / "benchmarks.md"
    text = kiosk_suggestions.main([
        "--db", "sqlite", "--products", "60", "--taps", "600", "--sales", "120",
        "--shoppers", "3", "--calls", "20", "--tap-calls", "5", "--doc", str(doc),
        "--sqlite-path", str(tmp_path / "bench.sqlite3"),
    ])  # fmt: skip
    assert "| SQLite | suggest() |" in text and "| SQLite | whole tap |" in text
    assert doc.read_text().strip().startswith("# Kiosk suggestion benchmarks")
