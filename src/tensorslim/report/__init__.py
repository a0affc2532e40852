"""A comparison report over model directories: ``report.json``, PNG plots and one self-contained page.

:func:`write_report` reads each model directory, writes into ``out_dir`` (atomically, as a whole):

* ``report.json`` - every figure shown, per model, plus Pareto fronts, plot list and notes;
* ``accuracy_vs_params.png``, ``accuracy_vs_macs.png``, ``accuracy_vs_latency.png`` (each drawn when at least
  one model has both numbers): accuracy against cost, Pareto-optimal models ringed and joined by a step line;
* ``layers_<name>.png`` for each compressed model: params and MACs of every compressed layer, original vs
  compressed;
* ``index.html`` - a table of all models and the plots, the images embedded as base64 ``data:`` URIs with
  inline CSS and no external resource, so it opens straight from disk or as a mail attachment.

Keys read (anything missing is shown as "-" and listed in the report's notes; nothing else is required)
--------------------------------------------------------------------------------------------------------
``model.json`` (see :mod:`tensorslim.modeldir`):

* ``spec.builder``, ``spec.kwargs`` - shown; an uncompressed model with the same spec and dataset is taken as
  the original of a compressed one when ``metrics.json`` does not name it.
* ``dataset``, ``input_shape`` - shown; ``input_shape`` is also needed to compute missing costs.
* ``compression`` - null, or ``{"layers": [{"name", "type", "method", "rank", "params_before", "params_after",
  "macs_before", "macs_after"}, ...]}`` (as written by :mod:`tensorslim.surgery`): the method summary and the
  per-layer bars.

``metrics.json``:

* ``accuracy`` - a number or ``{split: number}``; the split is chosen in the order test, val, train, then the
  first key. Values are percentages; when every model's value is <= 1 they are read as fractions.
* ``params``, ``macs`` - totals. Fallback: ``profile.total``; then, when ``compute_missing`` is set, the cost
  profile of the loaded model (:func:`tensorslim.cost.profile`).
* ``latency`` - milliseconds: a number (batch 1), ``{"<batch>": ms or {"median_ms": ms}}``, or a
  :meth:`BenchResult.to_dict() <tensorslim.export.bench.BenchResult.to_dict>`; fallback: a ``bench.json`` file
  (a ``BenchResult.to_dict()``) in the model directory. Batch 1 is used when present, else the smallest batch.
  Latencies are only comparable when measured on one machine with the same settings. When the benchmark ran
  with ``against`` the original (matched by label = directory name, or by source path), its paired speedup
  is used for the "speedup" column, and its median fills the original's latency if that has none.
* ``profile`` - a :meth:`tensorslim.cost.Profile.to_dict`, used for the per-layer bars when ``compression``
  carries no per-layer costs (layers matched by name; a replaced layer's sub-modules are summed).
* ``original`` - ``{"path", "params", "macs", "accuracy"}`` (written by ``tensorslim compress``): the model
  directory this one was compressed from (matched among the given directories by resolved path, then by
  directory name) and its figures, used for the ratios when that directory is not part of the report.

Modules: :mod:`.read` (a model directory into an :class:`~.entry.Entry`), :mod:`.compare` (originals, ratios,
Pareto fronts), :mod:`.plots` (PNGs), :mod:`.page` (``index.html``), :mod:`.write` (:func:`write_report`).
This stage sits above :mod:`tensorslim.export`: it reads the benchmark results that export writes, as JSON, and
imports nothing from it.
"""

from __future__ import annotations

from .compare import pareto_front
from .entry import Entry, ReportError
from .write import INDEX_HTML, REPORT_JSON, write_report

__all__ = ["INDEX_HTML", "REPORT_JSON", "Entry", "ReportError", "pareto_front", "write_report"]
