"""`posterdb read`, `posterdb identify`, `posterdb search-text`: the text on posters and the film.

Both stages are resumable: `read` reads the stored posters with no reading yet, `identify` the
read posters not identified yet or left pending (catalogue down / rate-limited).
"""
from __future__ import annotations

import time
from typing import Annotated

import typer
from rich.table import Table

from posterdb.core.errors import UsageError
from posterdb.core.rules import check_poster_ids
from posterdb.reading.configured import check_catalogue
from posterdb.ui.cli.common import (
    DEFAULT_STORE, JsonOpt, ModelDirOpt, StoreOpt, command, emit, err, esc, open_store, out)

IdsArg = Annotated[list[int] | None, typer.Argument(help="Poster ids (default: with --all).")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every stored poster still to do.")]
CatalogueOpt = Annotated[str | None, typer.Option(
    "--catalogue", help="tmdb (TMDB_API_KEY / TMDB_READ_TOKEN, POSTERDB_TMDB_URL) or a film "
    "file: IMDb title.basics.tsv[.gz] or a CSV with title, year, genres. Default: the "
    "store's (posterdb config); a store with none remembers it.")]


def _ids(ids: list[int] | None, every: bool) -> list[int] | None:
    if ids and every:
        raise UsageError("give poster ids or --all, not both")
    if not ids and not every:
        raise UsageError("give poster ids, or --all for every poster still to do")
    if ids and min(ids) < 1:
        raise UsageError(f"poster ids are positive, not {min(ids)}")
    check_poster_ids(ids or [])
    return None if every else ids


def catalogue_for(db, spec: str | None, patient: bool = True):
    """The catalogue to identify against: `spec` (a flag), else the store's (posterdb config),
    else TMDb when its credentials are set; a UsageError says how to name one."""
    flow = db.daily.flow(spec, identify=True, patient=patient)
    cat = flow.catalogue
    remember_catalogue(db, flow)
    return cat


def remember_catalogue(db, flow) -> str | None:
    """A catalogue named with --catalogue is remembered by a store that has none yet."""
    if flow is None or flow.choice is None or flow.choice.origin != "--catalogue":
        return None
    if db.daily.settings().saved.get("catalogue"):
        return None
    db.daily.configure("catalogue", flow.choice.spec)
    return flow.choice.spec


def _sum(a: dict | None, b: dict | None) -> dict | None:
    """Two stage reports as one: counts added, lists joined, the rest from the later one."""
    if a is None or b is None:
        return a or b
    out = dict(b)
    for k, v in a.items():
        if isinstance(v, bool) or k in ("posters_per_s", "cpu_s_per_poster"):
            continue
        if isinstance(v, (int, float)) and isinstance(b.get(k), (int, float)):
            out[k] = round(v + b[k], 3) if isinstance(v, float) else v + b[k]
        elif isinstance(v, list) and isinstance(b.get(k), list):
            out[k] = v + b[k]
        elif k not in out or out[k] is None:
            out[k] = v
    secs = out.get("seconds")
    if "posters_per_s" in out and secs:
        out["posters_per_s"] = round(out["read"] / secs, 3) if out.get("read") else None
    if "cpu_s_per_poster" in out and out.get("read"):
        cpu = sum((d.get("cpu_s_per_poster") or 0) * d.get("read", 0) for d in (a, b))
        out["cpu_s_per_poster"] = round(cpu / out["read"], 3)
    return out


def arrivals_first(db, flow, added: list[int], catalogue, as_json: bool, threads: int,
                   stages: dict, backlog: bool = True) -> None:
    """Read (and, with a catalogue, identify) the posters just added first; then, with
    `backlog`, every older poster still unread or undecided: today's arrivals never wait
    behind a backlog. Without it the older ones are only counted (`older_left`). Filled into
    `stages` as each step ends (a step that raises leaves the earlier ones reported).
    Arrivals the catalogue left pending are retried on the next run, not in this one."""
    r1 = run_read(db, added, as_json, threads)
    stages["read"] = r1
    i1 = run_identify(db, catalogue, added, as_json) if catalogue is not None else None
    if catalogue is not None:
        stages["identify"] = i1
    stages["arrivals"] = {"posters": len(added), "read": r1["read"],
                          "read_seconds": r1["seconds"],
                          **({k: i1[k] for k in ("identified", "unidentified", "pending")}
                             if i1 else {})}
    if not backlog:
        if flow is not None:
            stages["older_left"] = {"unread": len(flow.unread(1 << 30)),
                                    "undecided": len(flow.undecided(1 << 30))}
        return
    stages["read"] = _sum(r1, run_read(db, None, as_json, threads))
    if catalogue is not None and not i1.get("stopped"):
        fresh = set(added)
        older = sorted(i for i in flow.undecided(1 << 30) if i not in fresh)
        if older:
            stages["identify"] = _sum(i1, run_identify(db, catalogue, older, as_json))


def progress_bar(name: str, as_json: bool):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}/s"), TimeRemainingColumn(), console=err,
                   transient=True, disable=as_json or not err.is_terminal)
    task = bar.add_task(name, total=None, rate="-")
    t0 = time.perf_counter()

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total,
                   rate=f"{done / max(time.perf_counter() - t0, 1e-6):.1f}")

    return bar, update


def run_read(db, ids, as_json: bool, threads: int = 2) -> dict:
    bar, update = progress_bar("read", as_json)
    with bar:
        return db.reading.read(ids, threads=threads, progress=update)


def run_identify(db, catalogue, ids, as_json: bool, redo: bool = False,
                 artwork: bool = True) -> dict:
    bar, update = progress_bar("identify", as_json)
    with bar:
        return db.reading.identify(catalogue, ids, redo=redo, artwork=artwork, progress=update)


def reference_decades(decades: str, per_decade: int) -> list[int]:
    """"1930,1950-1970" -> [1930, 1950, 1960, 1970]; checked before a store is opened."""
    try:
        wanted = sorted({d for part in decades.split(",") if part.strip()
                         for d in _decade_range(part.strip())})
    except ValueError:
        raise UsageError(f"--reference: decades like 1930,1950-1970, not {decades!r}") from None
    if not wanted:
        raise UsageError("--reference: no decade given")
    if per_decade < 1:
        raise UsageError(f"--reference-per-decade must be at least 1, not {per_decade}")
    return wanted


def run_reference(db, catalogue, decades: list[int], per_decade: int, as_json: bool) -> dict:
    """Cache the posters of the `per_decade` most voted films of each decade."""
    films = catalogue.reference_films(decades, per_decade)
    bar, update = progress_bar("reference", as_json)
    with bar:
        return db.reading.add_reference(catalogue, films, update)


def _decade_range(part: str) -> range:
    lo, _, hi = part.partition("-")
    lo, hi = int(lo), int(hi or lo)
    if lo % 10 or hi % 10 or not 1870 <= lo <= hi <= 2100:
        raise ValueError(part)
    return range(lo, hi + 1, 10)


def read_line(r: dict) -> str:
    rate = f" ({r['posters_per_s']} posters/s, {r['device']})" if r["posters_per_s"] else ""
    return (f"read [bold]{r['read']}[/] posters, {r['lines']} lines{rate}"
            + (f", [red]{len(r['failed'])} failed[/]" if r["failed"] else "")
            + (f", not stored: {r['not_found']}" if r["not_found"] else ""))


def identify_line(r: dict) -> str:
    left = r["pending"] + r["not_tried"]
    return (f"identified [bold]{r['identified']}[/], unidentified {r['unidentified']}"
            + (f", [yellow]{left} left for a later run[/] ({r['stopped'] or 'catalogue busy'})"
               if left else "") + f" — {r['requests']} catalogue requests ({r['catalogue']})")


@command
def read(ids: IdsArg = None, every: AllOpt = False,
         threads: Annotated[int, typer.Option("--threads", help="OCR threads.")] = 2,
         store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None,
         as_json: JsonOpt = False):
    """Read the text printed on stored posters (OCR; resumable: skips posters already read)."""
    wanted = _ids(ids, every)
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, not {threads}")
    db = open_store(store, model_dir, create=True)
    r = run_read(db, wanted, as_json, threads)
    emit(as_json, r, lambda: out.print(read_line(r)))
    raise typer.Exit(1 if r["failed"] or r["not_found"] else 0)


@command
def identify(ids: IdsArg = None, every: AllOpt = False, catalogue: CatalogueOpt = None,
             redo: Annotated[bool, typer.Option("--redo", help="Identify again, even posters "
                                                "already identified or refused.")] = False,
             text_only: Annotated[bool, typer.Option(
                 "--text-only", help="Do not compare the scans with the films' own posters.")
             ] = False,
             reference: Annotated[str | None, typer.Option(
                 "--reference", help="First cache the posters of the most voted TMDb films of "
                 "these decades (e.g. 1930,1950-1970), to identify scans by their art alone.")
             ] = None,
             per_decade: Annotated[int, typer.Option(
                 "--reference-per-decade", help="Films per decade for --reference.")] = 1000,
             store: StoreOpt = DEFAULT_STORE, model_dir: ModelDirOpt = None,
             as_json: JsonOpt = False):
    """Identify the film of read posters in a catalogue; identified posters get its genres.
    The candidates' own posters are compared with the scan (docs/identify.md)."""
    wanted = _ids(ids, every)
    spec = check_catalogue(catalogue) if catalogue is not None else None   # before any store
    decades = reference_decades(reference, per_decade) if reference else None
    if decades and spec is not None and spec != "tmdb":
        raise UsageError("--reference needs the tmdb catalogue (--catalogue tmdb)")
    db = open_store(store, model_dir, create=True)
    cat = catalogue_for(db, catalogue)
    if decades and not hasattr(cat, "reference_films"):
        raise UsageError("--reference needs the tmdb catalogue (--catalogue tmdb)")
    ref = run_reference(db, cat, decades, per_decade, as_json) if decades else None
    r = run_identify(db, cat, wanted, as_json, redo, artwork=not text_only)
    if ref is not None:
        r["reference"] = ref
    emit(as_json, r, lambda: out.print(identify_line(r)))


@command
def search_text(query: Annotated[str, typer.Argument(help="Words to find in the read text.")],
                limit: Annotated[int, typer.Option("--limit")] = 50,
                store: StoreOpt = DEFAULT_STORE, as_json: JsonOpt = False):
    """Posters whose read text contains QUERY (case and spaces ignored: "garbo", "greta garbo")."""
    if not query.strip():
        raise UsageError("give some text to search for")
    if limit < 1:
        raise UsageError(f"--limit must be at least 1, not {limit}")
    hits = open_store(store).reading.search(query, limit)
    rows = [{"id": h["id"], "title": h["title"], "year": h["year"], "genres": h["genres"],
             "read_text": h["read_text"]} for h in hits]

    def human():
        t = Table(title=esc(f"read text containing {query!r}"))
        for c in ("id", "title", "year", "read text"):
            t.add_column(c, overflow="fold")
        for h in rows:
            t.add_row(str(h["id"]), esc(h["title"]), str(h["year"] or ""),
                      esc(h["read_text"].replace("\n", " · ")[:120]))
        out.print(t)

    emit(as_json, {"query": query, "hits": rows}, human)


def register(app: typer.Typer) -> None:
    app.command()(read)
    app.command()(identify)
    app.command("search-text")(search_text)
