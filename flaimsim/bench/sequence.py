"""``flaimsim explain --html``: the tiny run as a message sequence diagram, one HTML file.

DistAIM and AugFLAIM (Private) side by side. Each protocol has one lane per party (its
clients, its compute servers or its aggregator) and one block per (round, phase), in the
order they happen (:data:`~flaimsim.bench.network.PHASE_ORDER`), from the setup handshake to
the last opening. A block holds the phase's narration (:mod:`narration`, from the options
that ran), its communication rounds, and one arrow per sender → receiver flow, labelled with
its bytes and messages from the ledger; after each round, what was opened and to whom. A step control (inline
plain JavaScript; arrow keys) shows the story step by step in both columns at once; without
JavaScript (or with ``#all-steps`` in the address) every block shows, and the contents list
links to each block's anchor.
"""

from __future__ import annotations

import html
from collections import defaultdict
from pathlib import Path
from typing import Sequence

from flaimsim.bench.network import PHASE_ORDER
from flaimsim.bench.report import write_text_atomic
from flaimsim.bench.runs import human_bytes
from flaimsim.bench.tiny import Story, TinyRuns
from flaimsim.parties.ledger import LedgerRow, party_kind

LANE_GAP = 92
ROW = 22
TOP = 34
KIND_ORDER = {"client": 0, "server": 1, "aggregator": 2}
KIND_COLOURS = {"client": "#1f77b4", "server": "#d62728", "aggregator": "#2ca02c"}
TOTALS_KEY = 10**9  # the totals come last
SECAGG_STEPS = {"secagg-keys": "SecAgg+ steps 1–2", "secagg-masked-input": "SecAgg+ step 3",
                "secagg-unmask": "SecAgg+ step 4"}
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1em auto;max-width:1400px;
padding:0 1em;color:#1b1b1b;line-height:1.35}
h1{font-size:1.5em;margin:.2em 0}.cols{display:flex;gap:1.5em;align-items:flex-start}
.col{flex:1 1 0;min-width:0}.col>h2{position:sticky;top:0;background:#fff;margin:0;
padding:.3em 0;border-bottom:2px solid #ccc;z-index:1}
.step{border:1px solid #ddd;border-radius:6px;margin:.7em 0;padding:.4em .6em}
.step h3{margin:.1em 0 .2em;font-size:1em}.say{font-size:.88em;margin:.2em 0 .4em}
.step.current{border-color:#ff7f0e;box-shadow:0 0 0 2px #ff7f0e55}
.opened{background:#fff8e6}.opened ul{margin:.2em 0;padding-left:1.2em;font-size:.88em}
.hidden{display:none}.controls{position:sticky;top:0;background:#fff;padding:.4em 0;
z-index:2;border-bottom:1px solid #eee}button{font-size:1em;margin-right:.4em}
svg text{font-family:inherit}nav{font-size:.8em;columns:2}
.totals{font-size:.85em}
"""
SCRIPT = """
(function(){
  var steps=[].slice.call(document.querySelectorAll('.step'));
  var keys=[];steps.forEach(function(s){var k=+s.dataset.key;if(keys.indexOf(k)<0)keys.push(k);});
  keys.sort(function(a,b){return a-b;});
  var at=-1,label=document.getElementById('where');
  function show(i){at=Math.max(-1,Math.min(i,keys.length-1));
    steps.forEach(function(s){var k=+s.dataset.key;
      s.classList.toggle('hidden',at>=0&&k>keys[at]);
      s.classList.toggle('current',at>=0&&k===keys[at]);});
    label.textContent=at<0?'all steps shown':'step '+(at+1)+' of '+keys.length;
    var cur=document.querySelector('.step.current');if(cur)cur.scrollIntoView({block:'nearest'});}
  document.getElementById('first').onclick=function(){show(0);};
  document.getElementById('prev').onclick=function(){show(Math.max(0,at-1));};
  document.getElementById('next').onclick=function(){show(at+1);};
  document.getElementById('all').onclick=function(){show(-1);};
  document.addEventListener('keydown',function(ev){
    if(ev.key==='ArrowRight'){show(at+1);}else if(ev.key==='ArrowLeft'){show(Math.max(0,at-1));}});
  show(location.hash==='#all-steps'?-1:0);
})();
"""


def e(text: object) -> str:
    return html.escape(str(text))


def lanes(rows: Sequence[LedgerRow]) -> list[str]:
    """Every party in the ledger, clients first, then servers, then the aggregator."""
    names = {p for r in rows for p in (r.sender, r.receiver)}
    return sorted(names, key=lambda p: (KIND_ORDER[party_kind(p)],
                                        int(p.split(":")[1]) if ":" in p else 0))


def flows(rows: Sequence[LedgerRow]) -> list[tuple[str, str, int, int]]:
    """(sender, receiver, bytes, messages) per directed pair, several sessions summed."""
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in rows:
        out[(r.sender, r.receiver)][0] += r.bytes
        out[(r.sender, r.receiver)][1] += r.messages
    return [(s, t, b, m) for (s, t), (b, m) in out.items()]


def block_svg(parties: Sequence[str], arrows: Sequence[tuple[str, str, int, int]]) -> str:
    """Lanes (vertical lines, party names on top) and one labelled arrow per flow."""
    x = {p: 46 + i * LANE_GAP for i, p in enumerate(parties)}
    order = sorted(arrows, key=lambda a: (KIND_ORDER[party_kind(a[0])], x[a[0]], x[a[1]]))
    width = 46 * 2 + LANE_GAP * (len(parties) - 1)
    height = TOP + ROW * len(order) + 8
    out = [f'<svg class="seq" width="{width}" height="{height}" viewBox="0 0 {width} '
           f'{height}" role="img">']
    for p in parties:
        colour = KIND_COLOURS[party_kind(p)]
        out.append(f'<g class="lane" data-party="{e(p)}"><text x="{x[p]}" y="14" '
                   f'text-anchor="middle" font-size="11" fill="{colour}" font-weight="600">'
                   f'{e(p)}</text><line x1="{x[p]}" y1="20" x2="{x[p]}" y2="{height - 4}" '
                   f'stroke="{colour}" stroke-width="1.5" stroke-dasharray="3 3"/></g>')
    for i, (s, t, nbytes, msgs) in enumerate(order):
        y = TOP + i * ROW + 8
        x1, x2 = x[s], x[t]
        tip = -7 if x2 > x1 else 7
        colour = KIND_COLOURS[party_kind(s)]
        label = f"{human_bytes(nbytes)} · {msgs} msg"
        out.append(f'<g class="arrow" data-from="{e(s)}" data-to="{e(t)}" '
                   f'data-bytes="{nbytes}" data-messages="{msgs}">'
                   f'<title>{e(s)} → {e(t)}: {nbytes:,} B in {msgs} messages</title>'
                   f'<line x1="{x1}" y1="{y}" x2="{x2 + tip}" y2="{y}" stroke="{colour}" '
                   f'stroke-width="1.6"/><polygon points="{x2},{y} {x2 + tip},{y - 4} '
                   f'{x2 + tip},{y + 4}" fill="{colour}"/><text x="{(x1 + x2) / 2}" '
                   f'y="{y - 3}" text-anchor="middle" font-size="10">{e(label)}</text></g>')
    out.append("</svg>")
    return "".join(out)


def _key(round: int, phase: str | None) -> int:
    """The step's place in time: rounds, then phases in order; a round's openings last."""
    return round * 100 + (PHASE_ORDER.index(phase) if phase is not None else 99)


def story_html(story: Story) -> tuple[str, list[tuple[str, str]]]:
    """One protocol's column, and its (anchor, title) contents entries."""
    parties = lanes(story.ledger.rows)
    by_step: dict[tuple[int, str], list[LedgerRow]] = defaultdict(list)
    for r in story.ledger.rows:
        by_step[(r.round, r.phase)].append(r)
    rounds = sorted({t for t, _ in by_step} | set(story.opened))
    depth = story.ledger.rounds_by_step()  # communication rounds per (round, phase)
    parts = [f'<div class="col" data-protocol="{e(story.protocol)}">'
             f'<h2>{e(story.title)}</h2>']
    contents = []
    for t in rounds:
        phases = sorted({p for r, p in by_step if r == t}, key=PHASE_ORDER.index)
        for phase in phases:
            anchor = f"{story.protocol}-r{t}-{phase}"
            name = f"round {t} · {phase}" + (f" ({SECAGG_STEPS[phase]})"
                                               if phase in SECAGG_STEPS else "")
            rows = by_step[(t, phase)]
            total = sum(r.bytes for r in rows)
            contents.append((anchor, f"{story.protocol}: {name}"))
            parts.append(
                f'<section class="step block" id="{e(anchor)}" data-key="{_key(t, phase)}" '
                f'data-round="{t}" data-phase="{e(phase)}"><h3><a href="#{e(anchor)}">'
                f'{e(name)}</a> <small>{e(human_bytes(total))} in '
                f'{sum(r.messages for r in rows)} messages, <span class="depth">'
                f'{depth.get((t, phase), 0)}</span> communication rounds</small></h3>'
                f'<p class="say">{e(story.texts.get(phase, ""))}</p>'
                f'{block_svg(parties, flows(rows))}</section>')
        if story.opened.get(t):
            anchor = f"{story.protocol}-r{t}-opened"
            contents.append((anchor, f"{story.protocol}: round {t} · opened"))
            items = "".join(f"<li>{e(x)}</li>" for x in story.opened[t])
            parts.append(f'<section class="step opened" id="{e(anchor)}" '
                         f'data-key="{_key(t, None)}" data-round="{t}"><h3>round {t} · '
                         f'opened, and to whom</h3><ul>{items}</ul></section>')
    tot = story.ledger.totals()
    rows = "".join(f"<tr><td>{e(p)}</td><td>{e(human_bytes(tot[p]['sent']))}</td>"
                   f"<td>{e(human_bytes(tot[p]['received']))}</td></tr>" for p in parties)
    parts.append(f'<section class="step totals" id="{e(story.protocol)}-totals" '
                 f'data-key="{TOTALS_KEY}"><h3>totals per party</h3><table><tr><th>party</th>'
                 f'<th>sent</th><th>received</th></tr>{rows}</table></section></div>')
    return "\n".join(parts), contents


def sequence_html(tiny: TinyRuns) -> str:
    """The whole page: heading, step control, contents, the two columns."""
    columns, contents = [], []
    for story in tiny.stories():
        col, entries = story_html(story)
        columns.append(col)
        contents += entries
    nav = "".join(f'<li><a href="#{e(a)}">{e(t)}</a></li>' for a, t in contents)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>flaimsim "
            f"explain: who sends what to whom</title><style>{CSS}</style></head><body>\n"
            "<h1>Who sends what to whom: DistAIM against FLAIM</h1>"
            f"<p>{e(tiny.head())} Bytes: {e(tiny.distaim.ledger.bytes_source())} (DistAIM), "
            f"{e(tiny.flaim.ledger.bytes_source())} (FLAIM); an arrow is one sender → "
            "receiver flow in that step, labelled with its bytes and messages.</p>"
            '<div class="controls"><button id="first">« first</button><button id="prev">'
            '◀ back</button><button id="next">next ▶</button><button id="all">show all'
            '</button> <span id="where"></span> <small>(or the arrow keys)</small></div>'
            f'<details><summary>Contents</summary><nav><ol>{nav}</ol></nav></details>'
            f'<div class="cols">{"".join(columns)}</div>'
            f"<script>{SCRIPT}</script></body></html>\n")


def write_sequence(tiny: TinyRuns, out: str | Path) -> Path:
    """OUT/explain.html."""
    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    return write_text_atomic(path / "explain.html", sequence_html(tiny))


__all__ = ["sequence_html", "write_sequence", "block_svg", "lanes", "flows"]
