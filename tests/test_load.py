"""load.py, the app's load script, end to end at a tiny size: it starts `python app.py`, runs
concurrent clients and reports its figures (the real run is 16 clients x 60 s, README)."""
import json

import pytest

import load


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_load_script_reports_a_clean_run(capsys):
    assert load.main(["--clients", "3", "--seconds", "4", "--rounds", "2", "--json"]) == 0
    out = capsys.readouterr().out
    res = json.loads(out.strip().splitlines()[-1])
    assert res["errors"] == 0 and res["server_alive"] and res["requests"] >= 3
    assert set(res["tasks"]) == {"chat", "poem", "tune"}
    assert all(t["requests"] >= 1 for t in res["tasks"].values())
    assert 0 < res["cold_start_s"] and 0 < res["rss_mb_idle"] and 0 < res["rss_mb_after"]
    assert "cold start: page served" in out
    assert [r["round"] for r in res["rounds"]] == [1, 2] and "round 2:" in out
    assert all(r["rss_mb_after"] > 0 and r["temp_mb_after"] >= 0 for r in res["rounds"])


def test_bad_arguments_are_a_usage_error():
    for bad in (["--clients", "0"], ["--rounds", "0"]):
        with pytest.raises(SystemExit) as e:
            load.main(bad)
        assert e.value.code == 2
