"""Machines run at the same time; the environments of one machine never do. And costs.

Two real kernel gateways on 127.0.0.1 stand for two remote machines; local environments
share this machine. Overlap is read from the records' start and finish times.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from pathlib import Path

import pytest
from remote_support import (  # noqa: F401 - pytest fixtures
    THREADS,
    Gateway,
    gateway,
    records,
    run,
    second_gateway,
    toml_value,
)

from cloudbench.paper.build import _machines_text, build_paper
from cloudbench.runners.base import LOCAL_MACHINE
from cloudbench.study import sysdeps
from cloudbench.study.spec import SpecError, list_prices, load_study

TOKEN_A, TOKEN_B = "CLOUDBENCH_TEST_MACHINE_A_TOKEN", "CLOUDBENCH_TEST_MACHINE_B_TOKEN"


def study_file(path: Path, notebook: Path, environments: list[dict[str, object]],
               repetitions: int = 3, sleep_s: float = 0.0) -> Path:
    lines = ["[study]", 'name = "machines"', f"repetitions = {repetitions}", "seed = 3",
             "timeout_s = 120", "", "[protocol]", f"notebook = {json.dumps(str(notebook))}",
             "[protocol.parameters]", 'model = "shapes_cnn"', "epochs = 1",
             f"sleep_s = {sleep_s}", "", "[[datasets]]", 'name = "shapes"', "images = 60"]
    for env in environments:
        lines += ["", "[[environments]]", *(f"{k} = {toml_value(v)}" for k, v in env.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def remote(name: str, server: Gateway, token_env: str) -> dict[str, object]:
    return {"name": name, "runner": "jupyter", "url": server.url, "token_env": token_env,
            "env": THREADS}


def interval(record: dict[str, object]) -> tuple[dt.datetime, dt.datetime]:
    return (dt.datetime.fromisoformat(str(record["started_at"])),
            dt.datetime.fromisoformat(str(record["finished_at"])))


def overlaps(a: dict[str, object], b: dict[str, object]) -> bool:
    (s1, e1), (s2, e2) = interval(a), interval(b)
    return s1 < e2 and s2 < e1


def test_machines_default_to_the_runner_and_can_be_named(tmp_path: Path, quick_protocol,
                                                          gateway: Gateway  # noqa: F811
                                                          ) -> None:
    spec = study_file(tmp_path / "m.toml", quick_protocol, [
        {"name": "pc"}, {"name": "pc-2"}, {"name": "lab", "runner": "jupyter",
                                          "url": gateway.url},
        {"name": "lab-2", "runner": "jupyter", "url": gateway.url, "machine": "lab"}])
    study = load_study(spec)
    assert [e.machine for e in study.environments] == [LOCAL_MACHINE, LOCAL_MACHINE, "lab",
                                                       "lab"]
    bad = study_file(tmp_path / "bad.toml", quick_protocol, [{"name": "pc", "machine": "a b"}])
    with pytest.raises(SpecError) as err:
        load_study(bad)
    assert err.value.key == "environments[0].machine"


def test_two_machines_run_at_the_same_time_and_local_ones_never_overlap(
        tmp_path: Path, quick_protocol, gateway: Gateway,  # noqa: F811
        second_gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    """Two gateways (two machines) and two local environments (one machine): the study
    takes well under the sum of its runs, the gateways' runs overlap in time, and the local
    ones never do (nor do two runs of one machine)."""
    monkeypatch.setenv(TOKEN_A, gateway.token)
    monkeypatch.setenv(TOKEN_B, second_gateway.token)
    spec = study_file(tmp_path / "m.toml", quick_protocol, [
        remote("lab-a", gateway, TOKEN_A), remote("lab-b", second_gateway, TOKEN_B),
        {"name": "pc", "env": THREADS}, {"name": "pc-2", "env": THREADS}],
        repetitions=3, sleep_s=1.5)
    out = tmp_path / "out"
    start = time.perf_counter()
    result = run(spec, out)
    elapsed = time.perf_counter() - start
    assert [r["status"] for r in result.executed] == ["ok"] * 12, [
        r["error"] for r in result.executed]
    recs = list(records(out).values())
    billed = sum(float(r["billed_s"]) for r in recs)
    assert elapsed < 0.7 * billed, (elapsed, billed)  # three machines at once
    by_machine: dict[str, list[dict[str, object]]] = {}
    for r in recs:
        by_machine.setdefault(str(r["machine"]), []).append(r)
    assert sorted(by_machine) == ["lab-a", "lab-b", LOCAL_MACHINE]
    for machine, mine in by_machine.items():  # one run at a time on each machine
        for i, a in enumerate(mine):
            for b in mine[i + 1:]:
                assert not overlaps(a, b), (machine, a["run_id"], b["run_id"])
    assert any(overlaps(a, b) for a in by_machine["lab-a"] for b in by_machine["lab-b"])
    # each machine keeps the interleaved order among its own environments
    local = sorted(by_machine[LOCAL_MACHINE], key=lambda r: str(r["started_at"]))
    assert [r["block"] for r in local] == [1, 1, 2, 2, 3, 3]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["machines"] == {"lab-a": ["lab-a"], "lab-b": ["lab-b"],
                                    LOCAL_MACHINE: ["pc", "pc-2"]}
    assert run(spec, out).executed == []  # resumes as a sequential study does


def test_a_price_gives_each_run_its_cost(tmp_path: Path, quick_protocol) -> None:
    spec = study_file(tmp_path / "p.toml", quick_protocol, [
        {"name": "pc", "price": "own-machine"},
        {"name": "rented", "price_per_hour": 3.6, "currency": "EUR",
         "price_source": "invoice of 2026-11-01"},
        {"name": "free"}], repetitions=1)
    study = load_study(spec)
    assert study.environments[0].price.name == "own-machine"
    assert study.environments[1].price.per_hour == 3.6
    assert study.environments[2].price is None
    recs = {r["environment"]: r for r in run(spec, tmp_path / "out").executed}
    assert recs["rented"]["billed_s"] >= recs["rented"]["wall_s"] > 0
    assert recs["rented"]["cost"] == pytest.approx(recs["rented"]["billed_s"] / 1000, rel=1e-3)
    assert recs["rented"]["currency"] == "EUR" and recs["pc"]["cost"] == 0
    assert recs["free"]["cost"] is None
    sysdeps.ensure_commands(sysdeps.GROUPS["tex"])
    pdf = build_paper(tmp_path / "out" / "runs.csv", study, tmp_path / "paper")
    text = " ".join(subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True,
                                   text=True, check=True).stdout.split())
    assert "Cost per environment" in text and "invoice of 2026-11-01" in text
    assert "All environments ran on one machine" in text


def test_the_paper_says_which_environments_ran_at_the_same_time(tmp_path: Path,
                                                                  quick_protocol,
                                                                  gateway: Gateway  # noqa: F811
                                                                  ) -> None:
    spec = study_file(tmp_path / "m.toml", quick_protocol, [
        {"name": "pc"}, {"name": "pc-2"}, {"name": "lab", "runner": "jupyter",
                                          "url": gateway.url}])
    text = _machines_text(load_study(spec), {}, "en")
    assert text.startswith("The environments ran on 2 machines at the same time")
    assert "this-machine: pc and pc-2" in text and "lab: lab" in text
    assert _machines_text(None, {"machines": {"a": ["x"], "b": ["y"]}}, "es").startswith(
        "Los entornos se ejecutaron en 2 máquinas")


@pytest.mark.parametrize(("env", "key", "message"), [
    ({"price": "no-such-price"}, "environments[0].price", "no list price"),
    ({"price_per_hour": 1.0}, "environments[0].price_source", "prices change"),
    ({"compute_units_per_hour": 2.0, "price_source": "x"}, "environments[0].price_per_unit",
     "both"),
    ({"price": "gcp-t4", "price_per_hour": 1.0}, "environments[0].price_per_hour",
     "not both"),
    ({"currency": "EUR"}, "environments[0].currency", "without a price"),
    ({"price_per_hour": -1.0, "price_source": "x"}, "environments[0].price_per_hour",
     "at least 0"),
])
def test_bad_prices_are_refused(tmp_path: Path, quick_protocol, env, key, message) -> None:
    spec = study_file(tmp_path / "p.toml", quick_protocol, [{"name": "pc", **env}])
    with pytest.raises(SpecError) as err:
        load_study(spec)
    assert err.value.key == key and message in str(err.value)


def test_compute_units_and_the_shipped_prices(tmp_path: Path, quick_protocol) -> None:
    prices = list_prices()
    for name, entry in prices.items():  # every entry dated and sourced
        assert entry["date"] and entry["source"] and entry["currency"], name
    spec = study_file(tmp_path / "p.toml", quick_protocol, [
        {"name": "colab", "price": "colab-t4"},
        {"name": "units", "compute_units_per_hour": 2.0, "price_per_unit": 0.1,
         "price_source": "Colab's panel, 2026-11-30"}])
    colab, units = load_study(spec).environments
    assert colab.price.per_hour == pytest.approx(prices["colab-t4"]["compute_units_per_hour"]
                                                 * prices["colab-t4"]["price_per_unit"])
    assert units.price.per_hour == pytest.approx(0.2)
    assert "2024" in colab.price.source
