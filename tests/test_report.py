import re
from html.parser import HTMLParser

import cv2
import numpy as np
import pandas as pd
import pytest

import boneage_features as bf
from boneage_features.cli import main
from boneage_features.explain import BASE_VALUE
from boneage_features.report import explain_batch

from .conftest import draw_hand

N_HANDS = 12


@pytest.fixture(scope="module")
def hands(tmp_path_factory):
    """A manifest of synthetic hands with ages, and a small model fitted on them: (folder, X, y, model file)."""
    folder = tmp_path_factory.mktemp("report")
    rows = []
    for i in range(N_HANDS):
        path = folder / f"hand{i:02d}.png"
        cv2.imwrite(str(path), (draw_hand(finger_length=0.25 + 0.02 * i, seed=i) * 255).astype(np.uint8))
        rows.append({"image": path.name, "sex": "M" if i % 2 else "F", "boneage": 12.0 + 16 * i})
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    X, y = bf.read_manifest(folder / "manifest.csv")
    model = bf.Pipeline(regressor_params={"n_estimators": 30, "min_child_samples": 3}).fit(X, y)
    model.save(folder / "model.joblib")
    return folder, X, y, folder / "model.joblib"


def _with_bad_rows(folder, X):
    """X plus a missing file, a corrupt file (with markup in its name) and an unknown sex."""
    (folder / "<b>bad&.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    extra = pd.DataFrame(
        {"image": [str(folder / "missing.png"), str(folder / "<b>bad&.png"), X["image"].iloc[0]],
         "sex": ["F", "M", "unknown"]},
        index=["missing", "corrupt", "nosex"],
    )
    return pd.concat([X, extra])


class _Page(HTMLParser):
    """What the tests look at in a page: tags, attributes, sections and their text."""

    def __init__(self):
        super().__init__()
        self.tags, self.sections, self.text = [], [], []
        self._section = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "section":
            self._section = {"class": attrs.get("class", ""), "text": ""}
            self.sections.append(self._section)

    def handle_endtag(self, tag):
        if tag == "section":
            self._section = None

    def handle_data(self, data):
        self.text.append(data)
        if self._section is not None:
            self._section["text"] += data


def _parse(path) -> tuple[str, _Page]:
    document = path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(document)
    page.close()
    return document, page


def test_explain_batch_never_stops_and_sums_to_the_predictions(hands):
    folder, X, _, model_file = hands
    model = bf.load_model(model_file)
    X_bad = _with_bad_rows(folder, X)
    contrib, outcome = explain_batch(model, X_bad)
    assert list(outcome.index) == list(X_bad.index) and list(contrib.index) == list(X.index)
    assert list(contrib.columns) == [*model.feature_names_, BASE_VALUE]
    assert (outcome.loc[X.index, "status"] == "ok").all()
    np.testing.assert_allclose(outcome.loc[X.index, "boneage_months"], model.predict(X), atol=1e-3)
    np.testing.assert_allclose(contrib.sum(axis=1), model.predict(X), atol=1e-3)
    failed = outcome.loc[["missing", "corrupt", "nosex"]]
    assert (failed["status"] == "error").all() and failed["boneage_months"].isna().all()
    assert "not found" in failed.at["missing", "error"] and "bad&.png" in failed.at["corrupt", "error"]
    assert "unknown" in failed.at["nosex", "error"]
    nothing, outcome = explain_batch(model, X_bad.loc[["missing"]])
    assert nothing.empty and list(nothing.columns) == list(contrib.columns)
    assert outcome.at["missing", "status"] == "error"


def test_report_is_one_self_contained_page(hands, tmp_path):
    folder, X, y, model_file = hands
    model = bf.load_model(model_file)
    X_bad = _with_bad_rows(folder, X)
    y_bad = pd.concat([y, pd.Series([10.0, 20.0, np.nan], index=["missing", "corrupt", "nosex"])])
    y_bad = y_bad.iloc[::-1]  # matched by row label, not position
    path = bf.write_report(model, X_bad, y_bad, path=tmp_path / "out" / "report.html",
                           title="Hands <&> \"quoted\"", model_name="tiny <model>")
    document, page = _parse(path)

    assert not re.search(r"https?://", document)
    assert not any(tag in ("script", "link", "iframe", "object", "embed") for tag, _ in page.tags)
    sources = [attrs.get("src") for tag, attrs in page.tags if "src" in attrs]
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    assert document.count('src="') == len(sources)  # every src is one of those data URIs

    images = [s for s in page.sections if "image" in s["class"].split()]
    assert len(images) == len(X_bad)  # one section per row, in order, failed rows included
    failed = [s for s in images if "failed" in s["class"].split()]
    assert len(failed) == 3
    assert "not found" in failed[0]["text"] and "<b>bad&.png" in failed[1]["text"] and "unknown" in failed[2]["text"]
    assert "<b>bad" not in document and "&lt;b&gt;bad&amp;.png" in document  # escaped, not markup
    assert "<title>Hands &lt;&amp;&gt; &quot;quoted&quot;</title>" in document and "tiny &lt;model&gt;" in document

    predicted = model.predict(X)
    for section, months, age in zip(images, predicted, y):
        shown = float(re.search(r"estimate ([\d.]+) months", section["text"]).group(1))
        assert shown == pytest.approx(months, abs=0.051)
        assert f"reference {age:.1f}" in section["text"]
    text = "".join(page.text)
    assert "Accuracy" in text and "MAE by age band and sex" in text and "Rows that could not be scored" in text
    # a heatmap per scored image, 3 accuracy figures and 2 importance figures
    assert len(sources) == len(X) + 3 + 2
    assert not list(path.parent.glob(".*tmp"))


def test_report_without_ages_or_scored_rows(hands, tmp_path):
    folder, X, _, model_file = hands
    model = bf.load_model(model_file)
    document, page = _parse(bf.write_report(model, X.iloc[:1], path=tmp_path / "one.html"))
    assert "Accuracy" not in document
    assert len([s for s in page.sections if "image" in s["class"]]) == 1

    bad = _with_bad_rows(folder, X).loc[["missing"]]
    document, page = _parse(bf.write_report(model, bad, pd.Series([5.0], index=bad.index), path=tmp_path / "bad.html"))
    assert "No scored image has a reference age" in document
    assert [s["class"] for s in page.sections] == ["image failed"]
    with pytest.raises(ValueError, match="top"):
        bf.write_report(model, X, path=tmp_path / "x.html", top=0)
    with pytest.raises(ValueError, match="one reference age per row"):
        bf.write_report(model, X, [1.0, 2.0], path=tmp_path / "x.html")


def test_cli_explain_and_report(hands, tmp_path, caplog):
    folder, X, y, model_file = hands
    manifest = pd.read_csv(folder / "manifest.csv")
    manifest.loc[1, "image"] = "missing.png"
    manifest.loc[2, "sex"] = "unknown"
    scoring = folder / "scoring.csv"
    manifest.to_csv(scoring, index=False)
    common = ["-m", str(model_file), "-q", "--n-jobs", "1"]

    out = tmp_path / "contributions.csv"
    assert main(["explain", str(scoring), "-o", str(out), *common]) == 0
    table = pd.read_csv(out, index_col="id", keep_default_na=False, na_values=[""])
    model = bf.load_model(model_file)
    assert list(table.columns) == ["image", "boneage_months", "status", "error", *model.feature_names_, BASE_VALUE]
    assert len(table) == N_HANDS and list(table.index[table["status"] != "ok"]) == ["missing", "hand02"]
    ok = table[table["status"] == "ok"]
    np.testing.assert_allclose(ok.iloc[:, 4:].sum(axis=1), ok["boneage_months"], atol=1e-3)
    assert table.loc["missing"].iloc[4:].isna().all() and "missing.png" in table.at["missing", "error"]
    assert "row missing failed" in caplog.text

    grouped = tmp_path / "by_region.csv"
    assert main(["explain", str(scoring), "-o", str(grouped), "--by", "region", "--limit", "4", *common]) == 0
    by_region = pd.read_csv(grouped, index_col="id")
    assert len(by_region) == 4
    assert list(by_region.columns[4:]) == ["whole", *bf.regions.REGION_NAMES, "clin", BASE_VALUE]
    np.testing.assert_allclose(by_region.loc[ok.index[:2], BASE_VALUE], ok[BASE_VALUE].iloc[:2], atol=1e-4)

    report = tmp_path / "report.html"
    assert main(["report", str(scoring), "-o", str(report), "--limit", "5", *common]) == 0
    document, page = _parse(report)
    assert len([s for s in page.sections if "image" in s["class"]]) == 5
    assert "Accuracy" in document and "missing.png" in document

    assert main(["explain", str(scoring), "-o", str(out), "--by", "bone", *common]) == 2
    assert main(["report", str(scoring), "-o", str(report), "--limit", "0", *common]) == 1
    assert main(["report", str(folder / "nope.csv"), "-o", str(report), *common]) == 1


@pytest.mark.slow
def test_report_on_real_radiographs_with_the_shipped_model(data_dir, tmp_path):
    pytest.importorskip("torch")
    X, y = bf.read_manifest(data_dir / "train.csv")
    X, y = X.iloc[:2], y.iloc[:2]
    model = bf.load_model()
    path = bf.write_report(model, X, y, path=tmp_path / "real.html")
    document, page = _parse(path)
    sections = [s for s in page.sections if "image" in s["class"]]
    assert len(sections) == 2 and not any("failed" in s["class"] for s in sections)
    assert "CNN age" in document
