"""`explore validate`: every study's checks in one summary table; exit code 1 iff a check
fails; each study's numbers are the ones its own validation computes."""

import json


def test_all_studies_summary(cli):
    from explore.cli.validate import VALIDATIONS
    code, out, _ = cli("validate", "--json")
    data = json.loads(out)
    studies = {r["study"] for r in data["checks"]}
    assert studies == set(VALIDATIONS)
    for r in data["checks"]:
        assert r["status"] in ("PASS", "WARN", "FAIL", "INFO")
        assert r["check"] and r["source"] and (r["tolerance"] or r["status"] == "INFO")
    assert code == (1 if any(r["status"] == "FAIL" for r in data["checks"]) else 0)
    chiplet = [r for r in data["checks"] if r["study"] == "chiplet"]
    assert {r["check"].split(":")[0] for r in chiplet} >= {"V1", "V2", "V3", "V5-latency"}
    hard = [r for r in chiplet if r["check"].startswith(("V1", "V4"))]
    assert hard and all(r["status"] == "PASS" for r in hard)


def test_summary_table_columns(cli):
    """Every field of a check is shown: status, check (study first), ours with the error,
    reference and tolerance, and each source once as a numbered note."""
    code, out, _ = cli("validate")
    for header in ("status", "check", "ours (error)", "reference; tolerance"):
        assert header in out
    _, data, _ = cli("validate", "--json")
    checks = json.loads(data)["checks"]
    sources = list(dict.fromkeys(r["source"] for r in checks))
    for i, source in enumerate(sources, 1):
        assert out.count(f"[{i}] {source}") == 1
    assert "sd: SD peak speedup" in out and "pipeline: " in out and "chiplet: " in out
    tally = out.splitlines()[0]
    for status in ("PASS", "WARN", "FAIL", "INFO"):
        n = sum(r["status"] == status for r in checks)
        assert (f"{n} {status}" in tally) if n else (status not in tally)


def test_validate_study_subcommands(cli):
    code, out, _ = cli("validate", "chiplet", "--json")
    assert json.loads(out)["study"] == "chiplet"
    code, out, _ = cli("validate", "sd", "--summary")
    assert "SD validation summary" in out
    code, out, _ = cli("validate", "pipeline", "--json")
    assert code == 0 and json.loads(out)["rows"]


def test_every_study_validates_both_ways(cli):
    """The registry mounts one validate command per study under both paths (issue 11)."""
    from explore.cli.registry import STUDIES
    for study in STUDIES:
        for path in (("validate", study.name), (study.name, "validate")):
            code, out, _ = cli(*path, "--help")
            assert code == 0 and "Usage: explore " + " ".join(path) in " ".join(out.split())
    code, a, _ = cli("sd", "validate", "--json")
    code2, b, _ = cli("validate", "sd", "--json")
    assert code == code2 == 0
    assert json.loads(a)["checks"] == json.loads(b)["checks"]
