"""``--report FILE.html``: one self-contained page about a batch run.

Inline SVG and CSS only: no script, no font, no request of any kind, so the
page opens offline, in any browser, years later, and cannot log a console
error. Charts: requests and tokens per second against the limit, 429s and
retries over time; tables: latency percentiles and the slowest lines.
"""

from __future__ import annotations

import html
import math
import time
from typing import Optional

from ._batch_report import BatchSummary, latency_percentiles

_W, _H, _PAD_L, _PAD_B, _PAD_T, _PAD_R = 860, 220, 56, 30, 14, 16


_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400)


def _buckets(wall: float) -> tuple[float, int]:
    """Bucket width (s) and count: 40 to 100 points whatever the run's length."""
    width = 0.1
    for step in _STEPS:
        width = float(step)
        if wall / width <= 100:
            break
    return width, max(1, math.ceil(max(wall, 1e-9) / width))


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 10 and value != int(value) else f"{value:,.0f} s"


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * exp >= value:
            return float(step * exp)
    return float(10 * exp)


def _chart(
    chart_id: str,
    title: str,
    unit: str,
    width: float,
    series: list[tuple[str, str, list[float]]],
    limit: Optional[float] = None,
    bars: bool = False,
) -> str:
    """An SVG chart of per-bucket rates (per second), with an optional dashed limit line."""
    count = max(len(values) for _, _, values in series)
    top = max([v for _, _, values in series for v in values] + [limit or 0.0])
    y_max = _nice_max(top * 1.1)
    plot_w, plot_h = _W - _PAD_L - _PAD_R, _H - _PAD_T - _PAD_B

    def x(i: float) -> float:
        return _PAD_L + plot_w * i / max(count, 1)

    def y(v: float) -> float:
        return _PAD_T + plot_h * (1 - v / y_max)

    parts = [
        f'<svg id="{chart_id}" class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{html.escape(title)}</title>'
    ]
    for k in range(5):
        v = y_max * k / 4
        parts.append(
            f'<line x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
            f'<text x="{_PAD_L - 6}" y="{y(v) + 4:.1f}" class="axis" text-anchor="end">{v:g}</text>'
        )
    total = count * width
    step = next((t for t in _STEPS if t >= total / 6), _STEPS[-1])
    for k in range(int(total // step) + 1):
        i = k * step / width
        parts.append(
            f'<text x="{x(i):.1f}" y="{_H - 8}" class="axis" text-anchor="middle">'
            f"{_seconds(k * step)}</text>"
        )
    for s_index, (name, color, values) in enumerate(series):
        if bars:
            slot = plot_w / max(count, 1) / len(series)
            for i, v in enumerate(values):
                if v > 0:
                    left = x(i) + s_index * slot
                    parts.append(
                        f'<rect x="{left:.1f}" y="{y(v):.1f}" width="{max(slot - 1, 1):.1f}" '
                        f'height="{y(0) - y(v):.1f}" fill="{color}"><title>{name}: {v:g}/s at '
                        f"{_seconds(i * width)}</title></rect>"
                    )
        else:
            points = " ".join(f"{x(i + 0.5):.1f},{y(v):.1f}" for i, v in enumerate(values))
            parts.append(
                f'<polyline points="{points}" fill="none" stroke="{color}" stroke-width="2">'
                f"<title>{html.escape(name)}</title></polyline>"
            )
    if limit:
        parts.append(
            f'<line x1="{_PAD_L}" x2="{_W - _PAD_R}" y1="{y(limit):.1f}" y2="{y(limit):.1f}" '
            f'class="limit"><title>limit: {limit:g} {unit}</title></line>'
        )
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{color}"></i>{html.escape(name)}</span>'
        for name, color, _ in series
    )
    if limit:
        legend += f'<span><i class="dash"></i>limit ({limit:g} {unit})</span>'
    return f'<h2>{html.escape(title)}</h2><div class="legend">{legend}</div>' + "".join(parts)


def _series(summary: BatchSummary) -> tuple[float, dict[str, list[float]]]:
    width, count = _buckets(summary.wall)
    names = ("requests", "tokens", "rate_limited", "retries", "errors")
    rows: dict[str, list[float]] = {name: [0.0] * count for name in names}
    for _, ended, status, error, tokens, again in summary.attempts:
        i = min(count - 1, max(0, int(ended // width)))
        rows["retries"][i] += again
        rows["requests"][i] += 1
        rows["tokens"][i] += tokens
        if status == 429:
            rows["rate_limited"][i] += 1
        elif error or (status is not None and status >= 500):
            rows["errors"][i] += 1
    return width, {k: [v / width for v in values] for k, values in rows.items()}


def _table(head: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{cells}</tr></thead><tbody>{body}</tbody></table>"


def _cards(s: BatchSummary) -> str:
    minutes = max(s.wall, 1e-9) / 60.0
    rpm = s.learned.get("rpm") or s.rpm
    cards = [
        ("lines", f"{s.total:,}"),
        ("ok", f"{s.ok:,}"),
        ("failed", f"{s.failed + s.invalid:,}"),
        ("wall time", f"{s.wall:,.1f} s"),
        ("requests/min", f"{s.sent / minutes:,.0f}" + (f" of {rpm:,.0f}" if rpm else "")),
        ("tokens", f"{s.tokens:,}"),
        ("429s", f"{s.rate_limited:,}"),
        ("retries", f"{s.retries:,}"),
    ]
    return "".join(
        f'<div class="card"><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>'
        for k, v in cards
    )


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;
max-width:900px;color:#1f2328;padding:0 12px}h1{font-size:22px;margin:0 0 4px}
h2{font-size:16px;margin:28px 0 4px}.sub{color:#59636e;margin:0 0 16px}
.cards{display:flex;flex-wrap:wrap;gap:8px}.card{border:1px solid #d1d9e0;border-radius:6px;
padding:8px 12px;min-width:90px}.card b{display:block;font-size:18px}.card span{color:#59636e}
.chart{width:100%;height:auto}.grid{stroke:#eef1f4}.axis{font-size:11px;fill:#59636e}
.limit{stroke:#cf222e;stroke-width:1.5;stroke-dasharray:6 4}.legend span{margin-right:14px}
.legend i{display:inline-block;width:12px;height:3px;margin-right:5px;vertical-align:middle}
.legend i.dash{border-top:2px dashed #cf222e;height:0}table{border-collapse:collapse}
td,th{border-bottom:1px solid #d1d9e0;padding:4px 12px;text-align:left}
.stopped{background:#fff1f0;border:1px solid #cf222e;padding:8px;border-radius:6px}
"""


def render_report(summary: BatchSummary, source: str = "") -> str:
    """The whole page as a string (UTF-8 HTML, nothing to fetch).

    >>> "<svg" in render_report(BatchSummary(wall=1.0))
    True
    """
    s = summary
    width, rows = _series(s)
    rpm_limit = s.learned.get("rpm") or s.rpm  # what the run kept to: the server's, if lower
    tpm_limit = s.learned.get("tpm") or s.tpm
    charts = [
        _chart(
            "requests-chart",
            "Requests per second",
            "req/s",
            width,
            [("requests answered", "#0969da", rows["requests"])],
            rpm_limit / 60.0 if rpm_limit else None,
        ),
        _chart(
            "tokens-chart",
            "Tokens per second",
            "tokens/s",
            width,
            [
                (
                    "tokens used (the limit's bucket holds a minute's worth)",
                    "#8250df",
                    rows["tokens"],
                )
            ],
            tpm_limit / 60.0 if tpm_limit else None,
        ),
        _chart(
            "errors-chart",
            "429s, errors and retries per second",
            "/s",
            width,
            [
                ("429s", "#bf8700", rows["rate_limited"]),
                ("5xx and network errors", "#cf222e", rows["errors"]),
                ("retries", "#1a7f37", rows["retries"]),
            ],
            bars=True,
        ),
    ]
    attempt_p = latency_percentiles([ended - began for began, ended, *_ in s.attempts])
    line_p = latency_percentiles([took for _, took, _, _ in s.lines])
    names = ("p50", "p90", "p99", "max")
    percentiles = _table(
        ("", *names),
        [
            ("one HTTP attempt (s)", *(f"{attempt_p.get(n, 0):.3f}" for n in names)),
            ("a line, with its retries (s)", *(f"{line_p.get(n, 0):.3f}" for n in names)),
        ],
    )
    slowest = sorted(s.lines, key=lambda row: row[1], reverse=True)[:10]
    slow = _table(
        ("id", "seconds", "attempts", "outcome"),
        [(str(i), f"{took:.3f}", str(n), status) for i, took, n, status in slowest],
    )
    stopped = f'<p class="stopped">Stopped early: {html.escape(s.stopped)}</p>' if s.stopped else ""
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>ratekeeper batch report</title><style>{_CSS}</style></head><body>"
        f'<h1>ratekeeper batch report</h1><p class="sub">{html.escape(source)} '
        f"({s.kind} lines, {s.provider}) &middot; {when}</p>{stopped}"
        f'<div class="cards">{_cards(s)}</div>{"".join(charts)}'
        f"<h2>Latency</h2>{percentiles}<h2>Slowest lines</h2>{slow}</body></html>\n"
    )
