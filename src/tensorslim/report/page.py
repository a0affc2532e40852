"""``index.html``: the table of models, the plots embedded as base64 ``data:`` URIs, inline CSS, the notes.

The page loads no external resource, so it opens straight from disk or as a mail attachment.
"""

from __future__ import annotations

import base64
import html

from .entry import Entry

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d1d1f;
background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:1.6rem;margin:0 0 4px} h2{font-size:1.15rem;margin:32px 0 10px;border-bottom:1px solid #ddd;
padding-bottom:4px} .sub{color:#666;font-size:.9rem;margin:0 0 18px}
.scroll{overflow-x:auto} table{border-collapse:collapse;width:100%;font-size:.8rem;background:#fff}
th,td{padding:5px 7px;border-bottom:1px solid #e6e6e6;text-align:right;white-space:nowrap}
th{background:#f0f0f3;font-weight:600} td.l,th.l{text-align:left}
tr:nth-child(even) td{background:#fbfbfd} td.star{color:#d62728;font-weight:700;white-space:normal}
.small{color:#777;font-size:.75rem} .good{color:#1a7f37} .bad{color:#b42318} .muted{color:#888}
figure{margin:18px 0;background:#fff;border:1px solid #e3e3e3;border-radius:6px;padding:10px}
figure img{max-width:100%;height:auto;display:block;margin:0 auto} figcaption{font-size:.85rem;color:#555;
margin-top:6px} ul.notes{font-size:.85rem;color:#555} code{font-size:.85em}
""".strip()


def _fmt_int(v: float | None) -> str:
    if v is None:
        return "-"
    v = float(v)
    for div, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:.2f} {unit}"
    return f"{v:.0f}"


def _fmt_ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}×"


def render(title: str, entries: list[Entry], plots: list[tuple[str, str, bytes]], notes: list[str],
          generated: str) -> str:
    esc = html.escape
    rows = []
    for e in entries:
        stars = ", ".join(("MACs" if k == "macs" else k) for k, v in e.pareto.items() if v)
        acc = "-" if e.accuracy is None else f"{e.accuracy:.2f}%"
        if e.accuracy is not None and e.accuracy_split and e.accuracy_split != "test":
            acc += f" <span class=muted>({esc(e.accuracy_split)})</span>"
        lat = "-" if e.latency_ms is None else f"{e.latency_ms:.3f} ms"
        if e.latency_ms is not None:  # what was timed: runtime, threads, batch
            lat += f" <span class=muted>({esc(e.latency_source or '?')}, batch {e.latency_batch or '?'})</span>"
        delta = e.ratios.get("accuracy_delta")
        d_cls = "" if delta is None else ("good" if delta >= 0 else "bad")
        d_txt = "-" if delta is None else f"{delta:+.2f} pt"
        rows.append(
            "<tr>"
            f"<td class=l><b>{esc(e.name)}</b><br><span class=small>{esc(e.builder or '-')} · "
            f"{esc(e.dataset or 'no dataset')}</span></td><td class=l>{esc(e.method)}</td>"
            f"<td>{acc}</td><td>{_fmt_int(e.params)}</td><td>{_fmt_int(e.macs)}</td><td>{lat}</td>"
            f"<td class=l>{esc(e.original or '-')}</td>"
            f"<td>{_fmt_ratio(e.ratios.get('params'))}</td><td>{_fmt_ratio(e.ratios.get('macs'))}</td>"
            f"<td>{_fmt_ratio(e.ratios.get('speedup'))}</td><td class='{d_cls}'>{d_txt}</td>"
            f"<td class='l star'>{'★ ' + esc(stars) if stars else ''}</td></tr>"
        )
    header = ("<tr><th class=l>model</th>"
              "<th class=l>compression</th><th>accuracy</th><th>params</th><th>MACs</th><th>latency</th>"
              "<th class=l>original</th><th>params ×</th><th>MACs ×</th><th>speedup</th><th>Δ acc</th>"
              "<th class=l>Pareto</th></tr>")
    figures = []
    for _file, caption, data in plots:
        b64 = base64.b64encode(data).decode("ascii")
        figures.append(f'<figure><img src="data:image/png;base64,{b64}" alt="{esc(caption)}">'
                       f"<figcaption>{esc(caption)}</figcaption></figure>")
    notes_html = "".join(f"<li>{esc(n)}</li>" for n in notes) or "<li>none</li>"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{_CSS}</style></head>
<body><main>
<h1>{esc(title)}</h1>
<p class=sub>{len(entries)} model(s) · generated {esc(generated)} by tensorslim · ratios are
original / compressed (speedup: original latency / compressed latency at the same batch) · Pareto: on the
accuracy-vs-cost front for that cost</p>
<h2>Models</h2>
<div class=scroll><table>{header}{''.join(rows)}</table></div>
<h2>Plots</h2>
{''.join(figures) or '<p class=muted>No plot: no model has both an accuracy and a cost.</p>'}
<h2>Notes</h2>
<ul class=notes>{notes_html}</ul>
</main></body></html>
"""
