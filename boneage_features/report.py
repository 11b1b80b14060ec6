"""A self-contained HTML report of bone-age estimates and of what each one rests on.

:func:`write_report` scores the rows of a manifest with a fitted :class:`~boneage_features.Pipeline`,
splits every estimate into feature contributions (TreeSHAP, :mod:`boneage_features.explain`) and
writes one HTML file: the model, for each image its estimate, its radiograph with the bone regions
coloured by how many months they add or take away, and a table of the largest contributions; with
reference ages, the accuracy figures and MAE by age band and sex. Figures are embedded as base64 PNG
data URIs and the style sheet is inline, so the file opens anywhere, offline, and loads nothing from
elsewhere. A row that cannot be scored (unreadable image, unknown sex) is reported with its error
instead of stopping the report. :func:`explain_batch` is the never-stopping scoring behind it, which
the ``explain`` command uses too.
"""

from __future__ import annotations

import base64
import datetime
import html
import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from . import figures
from .evaluate import AGE_BANDS, mae_by_band_and_sex, regression_metrics
from .explain import BASE_VALUE, contributions
from .io import parse_sex, read_image, write_atomic
from .pipeline import batch_outcome
from .preprocess import preprocess_hand
from .regions import REGION_NAMES, find_regions

logger = logging.getLogger(__name__)

__all__ = ["explain_batch", "write_report"]

#: Resolution of the embedded figures (pixels per inch).
DPI = 120
_CSS_PX_PER_INCH = 96

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1100px; margin: 1.5em auto; padding: 0 1em; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.25em; margin-top: 1.6em;
     border-bottom: 1px solid #ccc; padding-bottom: 0.2em; } h3 { font-size: 1.05em; margin: 0 0 0.4em; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #e3e3e3; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
table.facts td:first-child { color: #555; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; margin-bottom: 1em; }
.figures img { max-width: 100%; height: auto; }
section.image { border: 1px solid #ddd; border-radius: 6px; padding: 0.8em 1em; margin: 1em 0;
                break-inside: avoid; }
section.image .body { display: flex; flex-wrap: wrap; gap: 1.2em; align-items: flex-start; }
section.image .picture { width: 400px; max-width: 100%; }
section.image img { width: 100%; height: auto; }
section.failed { border-color: #e0b4b4; background: #fdf6f6; }
.estimate { font-size: 1.1em; margin: 0.2em 0 0.6em; }
.older { color: #c0392b; } .younger { color: #2e6fb5; }
.error { color: #a12622; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em;
         white-space: pre-wrap; word-break: break-word; }
.note { color: #666; font-size: 0.9em; }
"""


def explain_batch(model, X: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Contributions of every row that can be scored, and the outcome of every row; never stops at one.

    Parameters
    ----------
    model : Pipeline
        A fitted pipeline.
    X : DataFrame with ``image`` and ``sex`` columns
        An ``error`` column (as :func:`~boneage_features.read_manifest` with ``errors="coerce"``
        writes it) marks rows that are bad already.

    Returns
    -------
    contrib : DataFrame
        One row per row that was scored (indexed like ``X``): one column per model feature, in months,
        then ``base_value``; each row sums to the prediction (before :meth:`Pipeline.predict`'s floor
        at 0 months).
    outcome : DataFrame
        Indexed like ``X``, as :meth:`~boneage_features.Pipeline.predict_batch` returns it:
        ``boneage_months`` (the row sums of ``contrib``; NaN where the row failed), ``status`` ("ok" or
        "error") and ``error``.
    """
    table, errors = model.scorable_table(X)
    if len(table):
        contrib = contributions(model.regressor_, table)
    else:
        contrib = pd.DataFrame(columns=[*model.feature_names_, BASE_VALUE], index=table.index, dtype=float)
    return contrib, batch_outcome(X.index, contrib.sum(axis=1), errors)


def _png(figure, alt: str) -> str:
    """An ``<img>`` holding the figure as a base64 PNG data URI, shown at its size in inches.

    It is drawn at :data:`DPI` and displayed at the 96 CSS pixels of an inch, so that small labels stay
    sharp on high-density screens and in print.
    """
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    width = round(figure.get_size_inches()[0] * _CSS_PX_PER_INCH)
    return f'<img alt="{html.escape(alt)}" width="{width}" src="data:image/png;base64,{data}">'


def _table(header: list | None, rows: list, *, numeric: set = frozenset(), css: str = "") -> str:
    """An HTML table of already formatted cells (escaped here); ``numeric`` names right-aligned columns."""
    def cell(tag, position, value):
        align = ' class="num"' if position in numeric else ""
        return f"<{tag}{align}>{html.escape(str(value))}</{tag}>"

    head = ""
    if header is not None:
        head = "<thead><tr>" + "".join(cell("th", k, name) for k, name in enumerate(header)) + "</tr></thead>"
    body = "".join("<tr>" + "".join(cell("td", k, v) for k, v in enumerate(row)) + "</tr>" for row in rows)
    kind = f' class="{css}"' if css else ""
    return f"<table{kind}>{head}<tbody>{body}</tbody></table>"


def _months(value: float) -> str:
    return "\N{EN DASH}" if not np.isfinite(value) else f"{value:.1f}"


def _describe_image(value) -> str:
    if isinstance(value, np.ndarray):
        return f"(array {'x'.join(map(str, value.shape))})"
    return str(value)


def _model_facts(model, model_name: str | None) -> list:
    extractor = model.extractor_
    layout = [part for part, on in (("whole hand", extractor.families), ("14 bone regions", extractor.regions)) if on]
    facts = [
        ("model", model_name or "(in memory)"),
        ("booster", f"{model.booster}, sex {'as a feature' if model.sex_mode == 'feature' else 'one model per sex'}"),
        ("features", f"{len(model.feature_names_)}: handcrafted descriptors of the {' and '.join(layout)}"
                     + (", the CNN's age estimate" if getattr(model, "cnn_", None) is not None else "") + ", sex"),
        ("fitted by", f"boneage_features {getattr(model, 'version_', '?')} "
                      f"(features version {getattr(model, 'features_version_', '?')})"),
    ]
    from . import __version__

    facts.append(("report", f"boneage_features {__version__}, "
                             f"{datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}"))
    return facts


def _contribution_rows(view: pd.Series, top: int, missing=()) -> list:
    """Rows ``(name, css class, months)`` of an image's table: base value, the ``top`` largest groups,
    the other groups that contribute, the estimate. Groups contributing nothing are left out; regions
    in ``missing`` (not found: their NaN features still steer the trees) are marked so."""
    parts = view.drop(BASE_VALUE)
    parts = parts[parts != 0]
    parts = parts.reindex(parts.abs().sort_values(ascending=False, kind="stable").index)
    rows = [("base value", "", _months(view[BASE_VALUE]))]
    for name, value in parts.iloc[:top].items():
        css = "older" if value >= 0.05 else "younger" if value <= -0.05 else ""
        label = figures.GROUP_LABELS.get(name, name) + (" (not found)" if name in missing else "")
        rows.append((label, css, figures.signed_months(value)))
    if len(parts) > top:
        rows.append((f"{len(parts) - top} other groups", "", figures.signed_months(parts.iloc[top:].sum())))
    rows.append(("estimate", "", _months(view.sum())))
    return rows


def _image_table(view: pd.Series, top: int, missing=()) -> str:
    body = []
    for name, css, value in _contribution_rows(view, top, missing):
        cell = f"<b>{html.escape(value)}</b>" if name == "estimate" else html.escape(value)
        body.append(f'<tr><td>{html.escape(name)}</td><td class="{" ".join(["num", css]).strip()}">{cell}</td></tr>')
    return ('<table><thead><tr><th>by region</th><th class="num">months</th></tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def _heatmap(model, image, view: pd.Series) -> tuple[str, list]:
    """The region heatmap of one image as an ``<img>``, and the names of the regions not found."""
    extractor = model.extractor_
    hand = preprocess_hand(read_image(image), size=tuple(extractor.size), clahe_clip=extractor.clahe_clip,
                           faint_tissue=extractor.faint_tissue)
    hand, found = find_regions(hand)
    figure = figures.plot_region_heatmap(hand.image, found, view)
    missing = [name for name in REGION_NAMES if not found.regions.get(name) or not found.regions[name].found]
    return _png(figure, "bone regions coloured by their contribution"), missing


def _image_section(model, position: int, row, X, outcome, views, y, top: int) -> str:
    """One ``<section class="image">``: the estimate, the heatmap and the contributions; or the error."""
    name = html.escape(f"{row} \N{EM DASH} {Path(_describe_image(X.at[row, 'image'])).name}")
    anchor = f"row-{position}"
    if outcome.at[row, "status"] != "ok":
        return (f'<section class="image failed" id="{anchor}"><h3>{name}</h3>'
                f'<p class="error">{html.escape(str(outcome.at[row, "error"]))}</p></section>')
    estimate = float(outcome.at[row, "boneage_months"])
    facts = [f"estimate <b>{estimate:.1f} months</b> ({estimate / 12:.1f} years)"]
    if y is not None and np.isfinite(y[row]):
        facts.append(f"reference {y[row]:.1f} (error {figures.signed_months(estimate - y[row])})")
    facts.append(f"sex {html.escape(parse_sex(X.at[row, 'sex']))}")
    view = views.loc[row]
    try:
        picture, missing = _heatmap(model, X.at[row, "image"], view)
        note = f'<p class="note">not found, not painted: {html.escape(", ".join(missing))}</p>' if missing else ""
    except Exception as exc:  # the estimate stands; only its picture is lost
        logger.warning("row %s: no heatmap: %s", row, exc)
        picture, missing = "", []
        note = f'<p class="error">no heatmap: {html.escape(f"{type(exc).__name__}: {exc}")}</p>'
    return (f'<section class="image" id="{anchor}"><h3>{name}</h3><p class="estimate">{"; ".join(facts)}</p>'
            f'<div class="body"><div class="picture">{picture}{note}</div>{_image_table(view, top, missing)}</div>'
            "</section>")


def _accuracy_section(y_true, y_pred, male) -> str:
    metrics = regression_metrics(y_true, y_pred, male)
    bias = figures.signed_months(metrics["bias"])
    summary = (f"<p>{metrics['n']} images with a reference age: MAE <b>{metrics['mae']:.2f}</b> months, "
               f"RMSE {metrics['rmse']:.2f}, bias {bias} months (predicted \N{MINUS SIGN} reference).</p>")
    pictures = [
        _png(figures.plot_predicted_vs_reference(y_true, y_pred), "predicted against reference age"),
        _png(figures.plot_bland_altman(y_true, y_pred), "Bland-Altman plot"),
        _png(figures.plot_mae_by_band(y_true, y_pred, male), "MAE by age band and sex"),
    ]
    table = mae_by_band_and_sex(y_true, y_pred, male)
    rows = [
        [label, *(value for sex in ("F", "M", "all")
                  for value in (table.at[label, (sex, "n")], _months(table.at[label, (sex, "mae")])))]
        for label in [*(band for band, _, _ in AGE_BANDS), "all"]
    ]
    header = ["age band", "girls n", "girls MAE", "boys n", "boys MAE", "all n", "all MAE"]
    return (f"<h2>Accuracy</h2>{summary}<div class=\"figures\">{''.join(pictures)}</div>"
            f"<h3>MAE by age band and sex (months)</h3>{_table(header, rows, numeric=set(range(1, 7)))}")


def _importance_section(contrib: pd.DataFrame) -> str:
    pictures = [_png(figures.plot_importance(contrib, by=by), f"importance by {by}") for by in ("region", "family")]
    return ("<h2>What the estimates rest on</h2><p class=\"note\">Mean absolute contribution, in months, over "
            f"the images of this report.</p><div class=\"figures\">{''.join(pictures)}</div>")


def _reference_ages(y, X: pd.DataFrame) -> pd.Series:
    """``y`` as floats indexed like ``X``: a Series by its labels when it has X's rows, else by position."""
    if isinstance(y, pd.Series) and len(y) == len(X) and y.index.isin(X.index).all():
        return y.reindex(X.index).astype(float)
    values = np.asarray(y, dtype=float)
    if values.shape != (len(X),):
        raise ValueError(f"y must hold one reference age per row of X ({len(X)}); got shape {values.shape}")
    return pd.Series(values, index=X.index)


def write_report(model, X: pd.DataFrame, y=None, *, path, title: str = "Bone age report",
                 model_name: str | None = None, top: int = 6) -> Path:
    """Score, explain and write one self-contained HTML report.

    Parameters
    ----------
    model : Pipeline
        A fitted pipeline (e.g. :func:`~boneage_features.load_model`).
    X : DataFrame with ``image`` and ``sex`` columns
        The images to report on, one section each, in this order (an ``error`` column marks rows known
        to be bad, as :func:`~boneage_features.read_manifest` with ``errors="coerce"`` gives it).
    y : Series or (n,) array-like of months, optional
        Reference bone ages (a Series indexed like ``X`` is matched by row label); adds the accuracy
        figures and table, over the rows scored with a finite reference age.
    path : str or os.PathLike
        HTML file to write (atomically).
    title : str, default="Bone age report"
    model_name : str, optional
        How the model is named in the header (e.g. its file).
    top : int, default=6
        Regions listed in each image's table, largest |months| first.

    Returns
    -------
    Path
        The file written.
    """
    if top < 1:
        raise ValueError(f"top must be at least 1; got {top!r}")
    y = None if y is None else _reference_ages(y, X)
    contrib, outcome = explain_batch(model, X)
    ok = outcome["status"] == "ok"
    logger.info("%d of %d rows explained; drawing the report", int(ok.sum()), len(X))

    parts = [f"<h1>{html.escape(title)}</h1>",
             _table(None, _model_facts(model, model_name), css="facts")]
    summary = f"{len(X)} rows, {int(ok.sum())} scored"
    failed = outcome.index[~ok]
    parts.append(f"<p>{html.escape(summary)}{', ' + str(len(failed)) + ' failed' if len(failed) else ''}.</p>")
    if len(failed):
        rows = [(row, _describe_image(X.at[row, "image"]), outcome.at[row, "error"]) for row in failed]
        parts.append("<h2>Rows that could not be scored</h2>" + _table(["id", "image", "error"], rows))
    if y is not None:
        rated = ok & y.notna()
        if rated.any():
            male = [parse_sex(value) == "M" for value in X.loc[rated, "sex"]]
            parts.append(_accuracy_section(y[rated].to_numpy(), outcome.loc[rated, "boneage_months"].to_numpy(), male))
        else:
            parts.append("<h2>Accuracy</h2><p>No scored image has a reference age.</p>")
    views = figures.region_view(contrib)
    if len(contrib):
        parts.append(_importance_section(contrib))
    parts.append("<h2>Images</h2>")
    parts += [_image_section(model, k, row, X, outcome, views, y, top) for k, row in enumerate(X.index)]
    document = ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
                f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
                f"<body>{''.join(parts)}</body></html>\n")
    return write_atomic(path, lambda tmp: Path(tmp).write_text(document, encoding="utf-8"))
