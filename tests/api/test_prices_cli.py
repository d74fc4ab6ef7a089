"""`keel prices import`: a LiteLLM-format price file becomes keel's price file,
which keel then loads as the override of its built-in prices."""

import datetime
import json
from pathlib import Path

import pytest

from conftest import REPO, run_keel

FIXTURE = REPO / "tests" / "fixtures" / "litellm_prices.json"

# What the fixture holds, converted by hand: USD per token x 1e6, as decimal
# strings with at least two decimals.
EXPECTED = {
    ("openai", "gpt-4o"): {"input": "2.50", "output": "10.00", "cache_read": "1.25"},
    ("openai", "o3-mini"): {"input": "1.10", "output": "4.40", "cache_read": "0.55"},
    ("openai", "gpt-3.5-turbo-instruct"): {"input": "1.50", "output": "2.00"},
    ("anthropic", "claude-sonnet-4-5-20250929"): {
        "input": "3.00",
        "output": "15.00",
        "cache_write": "3.75",
        "cache_read": "0.30",
    },
    ("google", "gemini-2.5-flash-preview-04-17"): {
        "input": "0.15",
        "output": "0.60",
        "reasoning": "3.50",
    },
    ("google", "gemini-1.5-flash"): {"input": "0.075", "output": "0.30"},
    ("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo"): {"input": "0.88", "output": "0.88"},
    ("bedrock", "meta.llama3-3-70b-instruct-v1:0"): {"input": "0.72", "output": "0.72"},
    ("deepseek", "deepseek-chat"): {"input": "0.28", "output": "0.42", "cache_read": "0.028"},
    ("mistral", "mistral-large-latest"): {"input": "2.00", "output": "6.00"},
}
EXPECTED_TIERS = {
    ("anthropic", "claude-sonnet-4-5-20250929"): [
        {
            "above_input_tokens": 200000,
            "usd_per_mtok": {
                "input": "6.00",
                "output": "22.50",
                "cache_write": "7.50",
                "cache_read": "0.60",
            },
        }
    ],
    ("google", "gemini-1.5-flash"): [
        {"above_input_tokens": 128000, "usd_per_mtok": {"input": "0.15", "output": "0.60"}}
    ],
}
COUNTS = "imported 10 models, skipped 6 (3 not chat, 1 without token prices, 1 invalid, 1 duplicate)"

ORG_ROW = {
    "provider": "openai",
    "model": "gpt-4o",
    "effective_from": "2025-01-01",
    "usd_per_mtok": {"input": "1.00", "output": "4.00"},
}


def utc_today():
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def import_prices(tmp_path, *extra, data_dir=None):
    data_dir = data_dir or tmp_path / "data"
    return run_keel(["prices", "import", FIXTURE, "--data-dir", data_dir, *extra], cwd=tmp_path)


def rows_by_model(doc):
    return {(r["provider"], r["model"]): r for r in doc["models"]}


def test_import_writes_keel_prices_into_the_data_dir(tmp_path):
    before = utc_today()
    r = import_prices(tmp_path)
    after = utc_today()
    assert r.returncode == 0, r.stderr
    out = tmp_path / "data" / "prices.json"
    assert r.stdout.splitlines() == [COUNTS, f"wrote {out} (effective from {before})"] or (
        before != after
    )
    doc = json.loads(out.read_text())
    assert doc["format"] == "keel-prices/1"
    assert set(doc) == {"format", "description", "models"}
    rows = rows_by_model(doc)
    assert set(rows) == set(EXPECTED)
    for key, prices in EXPECTED.items():
        row = rows[key]
        assert row["usd_per_mtok"] == prices, key
        assert row["effective_from"] in (before, after)
        assert row.get("tiers") == EXPECTED_TIERS.get(key), key
        assert set(row) <= {"provider", "model", "effective_from", "usd_per_mtok", "tiers"}
    # sorted by provider, then model, for stable diffs
    keys = [(r["provider"], r["model"].lower()) for r in doc["models"]]
    assert keys == sorted(keys)
    assert not list((tmp_path / "data").glob("*.tmp"))


def test_skipped_entries_are_absent(tmp_path):
    assert import_prices(tmp_path).returncode == 0
    doc = json.loads((tmp_path / "data" / "prices.json").read_text())
    models = {r["model"] for r in doc["models"]}
    for name in (
        "sample_spec",
        "text-embedding-3-small",
        "dall-e-3",
        "whisper-1",
        "chat-without-prices",
        "negative-price",
        "openai/gpt-4o",
    ):
        assert name not in models
    # the first of two entries for one model wins
    assert rows_by_model(doc)[("openai", "gpt-4o")]["usd_per_mtok"]["input"] == "2.50"


def test_out_and_effective_from(tmp_path):
    out = tmp_path / "elsewhere.json"
    r = import_prices(tmp_path, "--out", out, "--effective-from", "2025-02-03")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == f"wrote {out} (effective from 2025-02-03)"
    doc = json.loads(out.read_text())
    assert {row["effective_from"] for row in doc["models"]} == {"2025-02-03"}
    assert not (tmp_path / "data" / "prices.json").exists()


def test_keel_loads_the_imported_file(tmp_path):
    data = tmp_path / "data"
    assert import_prices(tmp_path).returncode == 0
    r = run_keel(["migrate", "--data-dir", data], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    # the same file named by prices.file loads too
    r = run_keel(
        ["migrate", "--data-dir", data, "--set", f"prices.file={data / 'prices.json'}"],
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr


def test_broken_price_file_in_data_dir_stops_keel(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "prices.json").write_text('{"models": [{"provider": "openai"}]}')
    r = run_keel(["migrate", "--data-dir", data], cwd=tmp_path)
    assert r.returncode == 1
    assert "prices.json" in r.stderr and "models[0]" in r.stderr


def test_missing_prices_file_setting_stops_keel(tmp_path):
    r = run_keel(
        ["migrate", "--data-dir", tmp_path / "data", "--set", f"prices.file={tmp_path / 'no.json'}"],
        cwd=tmp_path,
    )
    assert r.returncode == 1
    assert "no.json" in r.stderr


def test_prices_file_env_variable(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"models": [], "surprise": true}')
    r = run_keel(
        ["migrate", "--data-dir", tmp_path / "data"],
        env_overrides={"KEEL_PRICES_FILE": bad},
        cwd=tmp_path,
    )
    assert r.returncode == 1
    assert "surprise" in r.stderr


def test_reimport_keeps_the_orgs_section(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    existing = {"format": "keel-prices/1", "models": [], "orgs": {"org-1": [ORG_ROW]}}
    (data / "prices.json").write_text(json.dumps(existing))
    r = import_prices(tmp_path)
    assert r.returncode == 0, r.stderr
    assert "kept its orgs section" in r.stdout
    doc = json.loads((data / "prices.json").read_text())
    assert doc["orgs"] == {"org-1": [ORG_ROW]}
    assert len(doc["models"]) == len(EXPECTED)
    assert run_keel(["migrate", "--data-dir", data], cwd=tmp_path).returncode == 0


def test_unparsable_existing_output_is_left_alone(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "prices.json").write_text("{not json")
    r = import_prices(tmp_path)
    assert r.returncode == 1
    assert "does not parse" in r.stderr
    assert (data / "prices.json").read_text() == "{not json"


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "unable to open"),
        ("{not json", "in.json"),
        ("[1, 2]", "not a JSON object"),
        ('{"text-embedding-3-small": {"mode": "embedding", "litellm_provider": "openai"}}',
         "nothing written"),
    ],
)
def test_unusable_input_exit_1(tmp_path, content, message):
    src = tmp_path / "in.json"
    if content is not None:
        src.write_text(content)
    r = run_keel(["prices", "import", src, "--data-dir", tmp_path / "data"], cwd=tmp_path)
    assert r.returncode == 1
    assert message in r.stderr or message in r.stdout
    assert not (tmp_path / "data" / "prices.json").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["prices"],
        ["prices", "export"],
        ["prices", "import"],
        ["prices", "import", str(FIXTURE), "extra"],
        ["prices", "import", str(FIXTURE), "--bogus"],
        ["prices", "import", str(FIXTURE), "--out"],
        ["prices", "import", str(FIXTURE), "--effective-from", "2025-02-30"],
        ["prices", "import", str(FIXTURE), "--effective-from", "yesterday"],
    ],
)
def test_usage_errors_exit_2(tmp_path, args):
    r = run_keel(args + ["--data-dir", str(tmp_path / "data")], cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr
    assert not (tmp_path / "data" / "prices.json").exists()


@pytest.mark.parametrize("args", [["prices", "--help"], ["prices", "import", "--help"]])
def test_help(args):
    r = run_keel(args)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Usage: keel prices import FILE")
    assert "--out" in r.stdout and "--effective-from" in r.stdout


def test_main_help_lists_prices():
    r = run_keel(["--help"])
    assert r.returncode == 0
    assert "  prices " in r.stdout
