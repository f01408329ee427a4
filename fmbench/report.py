"""``fmbench report``: one self-contained HTML page a person reads in a minute.

From a result (or a leaderboard entry): the headline scores with their intervals, the
baselines and the flags with their reasons; IoU against severity for every corruption and
against the budget for every attack, with the leaderboard's models of the same protocol and
dataset drawn as grey lines behind; a panel of one test image under the conditions (clean, each
corruption at its middle severity, the strongest gradient attack with its perturbation
magnified, and the predictions over the true mask) when the model can be loaded; the
self-check warnings with what each check means; and where the model ranks, with its
neighbours and whether each difference is inside the noise.  Figures are PNGs embedded as data
URIs: the file needs nothing else.
"""

from __future__ import annotations

import base64
import html
import io
import textwrap
from typing import Any

import numpy as np

from . import scores
from .errors import ResultError
from .leaderboard.report_style import GENERATOR, STYLE
from .show import FEW_IMAGES, few_images

CHECKS_EXPLAINED = {
    "gradient": "an attack whose input gradients were zero or non-finite on some images measures nothing there "
                "(gradient masking or a broken backward pass)",
    "random": "an attack that does not beat random noise of the same size by far is not attacking (shattered "
              "or obfuscated gradients)",
    "stronger": "a stronger attack (more steps, larger budget) that leaves a higher IoU than a weaker one signals "
                "gradient masking or a too-large step",
    "ratio": "a relative robustness above 1 means the condition scored better than the reference: the study's "
             "ratio then rewards failing at the reference",
}


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _curves(doc: dict[str, Any]) -> dict[str, list[tuple[float, float, str]]]:
    """Per corruption name and attack family: ``(level, mean IoU, label)``, corruptions in the
    protocol's order of their severities (mildest first, whichever way the level runs: SNR 5 to
    1), attacks by budget."""
    out: dict[str, list[tuple[float, float, str]]] = {}
    attack = set()
    for c in doc["conditions"]:
        if c["kind"] == "reference":
            continue
        key = c["name"] if c["kind"] == "corruption" else f"{c['name']} ({c.get('norm') or 'linf'})"
        if c["kind"] == "attack":
            attack.add(key)
        out.setdefault(key, []).append((float(c["level"]), float(c["iou"]), c["label"]))
    return {k: sorted(v) if k in attack else v for k, v in out.items()}


def _titles() -> dict[str, str]:
    """Corruption names as people say them (``sib``: space-invariant blur)."""
    from .plugins import get_registry

    return {n: spec.title for n, spec in get_registry().corruptions.items() if spec.title}


def curves_figure(doc: dict[str, Any], peers: list[dict[str, Any]]) -> str:
    """IoU against severity (corruptions) and budget (attacks), this model in colour, the
    peers in grey, the clean IoU dashed; a PNG data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = _curves(doc)
    kinds = {c["name"] if c["kind"] == "corruption" else f"{c['name']} ({c.get('norm') or 'linf'})": c["kind"]
             for c in doc["conditions"] if c["kind"] != "reference"}
    keys = list(mine)
    cols = 6
    rows = max(1, -(-len(keys) // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.2 * rows), squeeze=False)
    clean = scores.per_image(doc, "clean_iou")
    titles = _titles()
    for ax, key in zip(axes.flat, keys):
        for p in peers:
            pts = _curves(p).get(key)
            if pts:
                xs = range(len(pts)) if kinds[key] == "corruption" else [x * 255 for x, _, _ in pts]
                ax.plot(list(xs), [y for _, y, _ in pts], color="0.75", lw=1, marker="." if len(pts) == 1 else None)
        pts = mine[key]
        xs = list(range(len(pts))) if kinds[key] == "corruption" else [x * 255 for x, _, _ in pts]
        ax.plot(xs, [y for _, y, _ in pts], color="C0" if kinds[key] == "corruption" else "C3", lw=2, marker="o")
        if clean is not None:
            ax.axhline(float(np.mean(clean)), color="k", ls="--", lw=0.8)
        ax.set_title(titles.get(key, key), fontsize=9)
        ax.set_ylim(0, 1)
        ax.tick_params(labelsize=7)
        if kinds[key] == "corruption":
            ax.set_xticks(range(len(pts)), [f"{x:g}" for x, _, _ in pts])
            ax.set_xlabel("severity", fontsize=7)
        else:
            ax.set_xlabel("ε ×255" if "linf" in key else "ε (L2)", fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle("mean IoU per condition (coloured: this model; grey: the leaderboard's models on the same "
                 "protocol and dataset; dashed: clean IoU)", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def example_panel(doc: dict[str, Any], checkpoint: str | None = None, index: int = 0,
                  trust: tuple[str, ...] | list[str] = ()) -> tuple[str | None, str]:
    """One test image as the model sees it under the conditions, and what it predicts: a PNG
    data URI and a caption, or ``None`` and why there is no panel.  A model the file names by
    code (``module:Attr``, ``file.py:Attr``) is imported only when ``trust`` names it: the file
    is somebody's word, and its reference would run their code."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from .api import _registry, load_model, open_dataset
    from .attack import PassCounter
    from .conditions import BatchInputs, RunContext, WorstOf, plan
    from .errors import FmbenchError
    from .metrics import predict

    ref = str((doc.get("model") or {}).get("ref"))
    if ":" in ref and ref not in trust:
        return None, (f"no example images: the file names its model by code ({ref}), which is imported only when you "
                      f"trust it by name (--trust {ref}) after reading it")
    _, registry = _registry()
    pid = doc["protocol"]["id"].split("+", 1)[0]
    try:
        protocol = registry.protocol(pid)
        m = doc["model"]
        loaded = load_model(m["ref"], model_args=m.get("args") or None, checkpoint=checkpoint,
                            dataset=doc["dataset"]["ref"], weights=m.get("weights"), generation=protocol.version)
        data = open_dataset(doc["dataset"]["ref"], protocol.split, protocol.image_size)
    except (FmbenchError, OSError) as exc:
        return None, f"no example images: the model or data could not be loaded here ({exc})"
    sample = data[index]
    x = torch.from_numpy(np.asarray(sample.image, np.float32))[None, None]
    mask = torch.from_numpy(np.asarray(sample.mask, bool))[None]
    batch = BatchInputs(x, mask, [f"{doc['dataset']['ref']}/{sample.id}"], protocol, bool(data.synthetic))
    conds = plan(protocol, registry, synthetic=bool(data.synthetic))
    shown = [c for c in conds if c.kind == "reference"]
    by_name: dict[str, list] = {}
    for c in conds:
        if c.kind == "corruption":
            by_name.setdefault(c.name, []).append(c)
    shown += [cs[len(cs) // 2] for cs in by_name.values()]
    head = (doc.get("scores") or {}).get("headline") or {}
    iou = {c["id"]: c["iou"] for c in doc["conditions"]}
    attacks = [c for c in conds if c.kind == "attack" and not isinstance(c, WorstOf) and c.id in iou
               and c.name != "universal" and abs(c.level - head.get("eps", c.level)) < 1e-9]
    strongest = min(attacks, key=lambda c: iou[c.id]) if attacks else None
    run = RunContext(model=PassCounter(loaded.module),
                     corruptions={n: registry.corruption(n).factory() for n in by_name},
                     attacks={e.family: registry.build_attack(e) for e in protocol.attacks
                              if strongest is not None and e.family == strongest.family})
    cells: list[tuple[str, np.ndarray, np.ndarray | None, np.ndarray | None]] = []
    for c in shown + ([strongest] if strongest else []):
        applied = c.apply(batch, run)
        assert applied.input is not None  # these conditions all make an input
        with torch.inference_mode():
            pred = predict(loaded.module(applied.input))[0].numpy()
        cells.append((c.label, applied.input[0, 0].numpy(), pred, applied.target[0].numpy()))
    if strongest is not None:
        delta = cells[-1][1] - batch.reference()[0, 0].numpy()
        cells.append((f"perturbation ×{0.5 / max(strongest.level, 1e-6):.0f}",
                      0.5 + delta * 0.5 / max(strongest.level, 1e-6), None, None))
    fig, axes = plt.subplots(2, len(cells), figsize=(2.2 * len(cells), 4.6), squeeze=False)
    for j, (label, img, guess, truth) in enumerate(cells):
        axes[0, j].imshow(np.clip(img, 0, 1), cmap="gray", vmin=0, vmax=1)
        short = label.replace(" (on the measured image)", "")  # the caption says it once
        axes[0, j].set_title(textwrap.fill(short, 24), fontsize=7)
        if guess is not None and truth is not None:
            over = np.zeros(guess.shape + (3,))
            over[guess & truth] = (1, 1, 1)  # right
            over[guess & ~truth] = (1, 0.2, 0.8)  # false foreground
            over[~guess & truth] = (1, 0.8, 0)  # missed
            axes[1, j].imshow(over)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.tight_layout()
    caption = (f"test image {sample.id}{' (a measured image: every condition acts on it as recorded)' if not data.synthetic else ''}: "
               f"top, the model's input under each condition (the corruptions at their middle "
               f"severity, {strongest.label + ', the strongest gradient attack at the headline budget' if strongest else 'no attack'}); "
               f"bottom, its prediction: white right, magenta false foreground, orange missed")
    return _png(fig), caption




def _fmt(block: Any) -> str:
    return html.escape(scores.fmt(block))


def report_html(doc: dict[str, Any], entries: list[dict[str, Any]], *, panel: tuple[str | None, str] | None = None,
                title: str | None = None) -> str:
    """The report page of ``doc`` (a result or an entry) among ``entries``."""
    from .leaderboard.compare import compare
    from .leaderboard.entry import as_entry, model_label

    mine = as_entry(doc) if doc.get("kind") == "fmbench-result" else doc
    label = model_label(mine)
    peers = [e for e in entries if e["protocol"]["hash"] == mine["protocol"]["hash"]
             and e["dataset"]["ref"] == mine["dataset"]["ref"] and model_label(e) != label]
    s = mine.get("scores") or {}
    head = s.get("headline") or {}
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8>{GENERATOR}<title>{html.escape(title or label)}</title>"
           f"<style>{STYLE}</style></head><body>",
           f"<h1>{html.escape(label)} on {html.escape(mine['dataset']['ref'])}</h1>",
           f"<p class=note>protocol {html.escape(mine['protocol']['id'])} (hash {html.escape(mine['protocol']['hash'])}), "
           f"{mine['dataset']['n_images']} test images; fmbench {html.escape(str(mine['provenance'].get('fmbench_version')))}, "
           f"{html.escape(str(mine['provenance'].get('hardware')))}; intervals are 95 % bootstrap intervals over the "
           f"images.</p>", "<h2>Headline scores</h2><table><tr><th>score</th><th>value [95 % interval]</th>"
           "<th>what it means</th></tr>"]
    meaning = {"robust_iou": f"per image the lowest IoU over every attack at {head.get('label', 'the headline budget')}, averaged",
               "corrupted_iou": "per image the mean IoU over every corruption, averaged",
               "clean_iou": f"IoU at the reference condition (SNR {(doc['protocol'].get('content') or {}).get('reference_snr', 8):g})",
               "adversarial_robustness": "the study's ratio: attacked IoU / clean IoU (rewards failing at the reference)",
               "corruption_robustness": "the study's ratio: corrupted IoU / clean IoU"}
    for key, text in meaning.items():
        out.append(f"<tr><td>{key.replace('_', ' ')}</td><td id={key}>{_fmt(s.get(key))}</td>"
                   f"<td class=dim>{html.escape(text)}</td></tr>")
    out.append("</table>")
    from .leaderboard.rank import flags as table_flags

    # the result's own flags, and those its table would give it (other-data, undertrained, ...)
    cleans = [(c, model_label(e)) for e in peers + [mine] if (c := (e.get("scores") or {}).get("clean_iou", {}).get("value")) is not None]
    flags = list(doc.get("flags") or [])
    flags += [f for f in table_flags(mine, max(cleans) if cleans else None) if f["flag"] not in {g["flag"] for g in flags}]
    if (n := mine["dataset"].get("n_images")) is not None and n < FEW_IMAGES:  # as the terminal says (show.flag_lines)
        flags.append({"flag": "few images", "reason": few_images(n)})
    data = None
    if peers:
        try:
            data = compare(doc, entries)
        except ResultError as exc:  # a result the leaderboard cannot rank is still reported
            out.append(f"<p class=note>not compared with the leaderboard: {html.escape(str(exc))}</p>")
    if data and data.get("baselines"):
        out.append("<p>Baselines on the same inputs (never attacked): " + "; ".join(
            f"{html.escape(n)}: clean {b['clean_iou']:.3f}" + (f", corrupted {b['corrupted_iou']:.3f}"
                                                                if b["corrupted_iou"] is not None else "")
            for n, b in data["baselines"].items()) + "</p>")
    out.append("<h2>Flags</h2>" + ("<ul>" + "".join(f"<li><span class=flag>{html.escape(f['flag'])}</span>: "
                                                   f"{html.escape(f['reason'])}</li>" for f in flags) + "</ul>"
                                   if flags else "<p>none: nothing says these numbers should not be read at face value.</p>"))
    out.append("<h2>IoU against severity and budget</h2>"
               f"<img id=curves alt='IoU curves' src='{curves_figure(mine, peers)}'>")
    if panel is not None:
        uri, caption = panel
        out.append("<h2>What the model sees</h2>" + (f"<img id=panel alt='example images' src='{uri}'>"
                                                     if uri else "") + f"<p class=note>{html.escape(caption)}</p>")
    warnings = list(mine.get("warnings") or [])
    heading = "Self-checks" if mine["dataset"].get("synthetic", True) else "Self-checks and notes on the measured images"
    out.append(f"<h2>{heading}</h2>" + ("<ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in warnings) + "</ul>"
                                         if warnings else "<p>every attack passed its self-checks.</p>"))
    out.append("<p class=note>What the checks mean: " + "; ".join(f"<b>{k}</b>: {html.escape(v)}"
                                                                  for k, v in CHECKS_EXPLAINED.items()) + ".</p>")
    out.append("<h2>Among the leaderboard</h2>")
    if data:
        out.append(f"<p class=note>{data['n_entries']} leaderboard rows on {html.escape(data['dataset'])} under this "
                   "protocol (an architecture's training seeds are one row, their mean); Δ = this model − the other, "
                   "with its paired 95 % interval over the same images; ≈ noise: the interval includes 0; ≈ seeds: Δ "
                   "is inside the seed-to-seed spread of the two.</p><table><tr><th>score</th><th>rank</th><th>above (Δ)</th><th>below (Δ)</th></tr>")
        for r in data["rows"][:5]:
            def nb(x: Any) -> str:
                if x is None:
                    return "—"
                ci = x.get("ci95")
                return (f"{html.escape(x['model'])} {x['score']['value']:.3f} ({x['diff']:+.3f}"
                        + (f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else "") + ")"
                        + (" ≈ noise" if x.get("within_noise") else " ≈ seeds" if x.get("within_seeds") else ""))
            rank = "not ranked" if r["rank"] is None else f"{r['rank']} of {r['of']}"
            out.append(f"<tr><td>{html.escape(r['label'])}</td><td>{rank}</td><td>{nb(r['above'])}</td>"
                       f"<td>{nb(r['below'])}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>no leaderboard entry shares this protocol and dataset.</p>")
    out.append("<script>document.body.dataset.rendered='yes'</script></body></html>")
    return "\n".join(out)
