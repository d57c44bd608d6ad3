"""Request bodies for the load engine, rendered once per alert type and filled per request.

The bodies are exactly what ``kubetest.alerts`` builds (``make_alert`` + ``webhook``), made
fast enough that building them does not cost the generator its rate (see below).
"""

from __future__ import annotations

import json
import random
import re
import time
import warnings
from datetime import datetime
from typing import Any

from kubetest.alerts import (
    ALERT_TYPES,
    FNV_MASK,
    FNV_OFFSET,
    FNV_PRIME,
    Alert,
    alert_fields,
    make_alert,
    new_run_token,
    webhook,
)

#
# Why: measured on the 2-core benchmark box (Python 3.11), building a body the reference way
# (make_alert + webhook + json.dumps + the pure-Python fingerprint) cost ~45 us per request -
# the FNV loop 20 us, the dicts and json.dumps 17 us - about a fifth of the engine's whole
# CPU per request (0.21-0.25 ms) at 3,000 req/s, plus garbage for the collector. So a factory
# renders each alert type's body once, with placeholders for what changes per request (the
# sequence number in its two spellings, startsAt, the fingerprint), and fills them with one
# bytes %-format; the fingerprints of a block of sequence numbers are computed at once with
# numpy (one vector step per label byte, from the cached hash state of the labels' constant
# prefix). Measured: 2.8 us per body for one type, 3.2 us for three, 9.5 us for "random"
# (seeding its Random is 5 us); with the collector settings of engine/shard.py the engine's
# CPU per request fell from 0.22-0.23 ms to 0.13-0.15 ms at 3,000-7,000 req/s. The
# reference builders stay the definition: each template is checked against them when built
# (falling back to them, with a warning, if it differs), and the tests compare the two.

#: Placeholders inside label/annotation values while a template is built (a NUL never occurs
#: in a Kubernetes name); in the JSON text they appear escaped (``\u0000D\u0000``).
_SEQ_D, _SEQ_8, _STARTS, _FP = "\x00D\x00", "\x008\x00", "\x00T\x00", "\x00F\x00"
_SLOTS = ((_SEQ_D, "d"), (_SEQ_8, "e"), (_STARTS, "t"), (_FP, "f"))
#: Fingerprints are computed for this many consecutive sequence numbers at a time
#: (~0.5-1 ms of numpy per block and type: short enough not to show in the schedule lag).
FP_BLOCK = 1024
#: Sequence numbers from here on (beyond int64 blocks) take the reference path.
_FAST_SEQ_LIMIT = 10**18 - FP_BLOCK

_ts_cache: tuple[int, bytes] = (-1, b"")


def _starts_at_now() -> bytes:
    """``startsAt`` for an alert built now: now minus 1 ms, in RFC 3339 to the millisecond
    (as ``make_alert``); the text is cached for the millisecond."""
    global _ts_cache
    ms = time.time_ns() // 1_000_000 - 1
    cached = _ts_cache
    if cached[0] == ms:
        return cached[1]
    sec, frac = divmod(ms, 1000)
    text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)).encode() + b".%03dZ" % frac
    _ts_cache = (ms, text)
    return text


def _fnv(data: bytes, h: int = FNV_OFFSET) -> int:
    for byte in data:
        h = ((h ^ byte) * FNV_PRIME) & FNV_MASK
    return h


def _fnv_many(h0: int, steps: list[bytes | str], seqs: Any) -> Any:
    """FNV-1a 64 of ``prefix + steps`` for each sequence number in ``seqs`` (int64 array),
    continuing from ``h0`` (the hash of the constant prefix): a ``bytes`` step is constant,
    ``"d"``/``"e"`` are the number as ``%d``/``%08d``. Vectorised over ``seqs``: uint64
    arithmetic wraps modulo 2**64 exactly as the hash's does."""
    import numpy as np

    prime = np.uint64(FNV_PRIME)
    consts = [np.uint64(b) for b in range(256)]
    out = np.empty(len(seqs), dtype=np.uint64)
    width = np.ones(len(seqs), dtype=np.int64)  # decimal digits of each number
    for k in range(1, 19):
        width += seqs >= 10**k
    for w in np.unique(width).tolist():
        mask = width == w
        part = seqs[mask]
        digits = {"d": w, "e": max(8, w)}
        columns = {
            kind: [((part // 10 ** (n - 1 - j)) % 10 + 48).astype(np.uint64) for j in range(n)]
            for kind, n in digits.items()
        }
        h = np.full(len(part), h0, dtype=np.uint64)
        for step in steps:
            if isinstance(step, str):
                for col in columns[step]:
                    h ^= col
                    h *= prime
            else:
                for byte in step:
                    h ^= consts[byte]
                    h *= prime
        out[mask] = h
    return out


class _Template:
    """One alert type's body with placeholders, and its label bytes split for the hash."""

    def __init__(self, factory: PayloadFactory, alert_type: str, workload: str | None) -> None:
        labels, annotations = alert_fields(
            alert_type, _SEQ_D, _SEQ_8, unique=factory.unique, namespace=factory.namespace,
            action=None, run=factory.run, alertname_suffix=factory.api == "kubernaut-legacy",
            workload=workload,
        )  # fmt: skip
        payload = webhook([Alert(labels, annotations, starts_at=datetime(2000, 1, 1))])
        # one alert: the common labels/annotations are its own (in a stable order here)
        payload["commonLabels"], payload["commonAnnotations"] = dict(labels), dict(annotations)
        payload["alerts"][0].update(startsAt=_STARTS, fingerprint=_FP)
        text = json.dumps(payload, separators=(",", ":")).replace("%", "%%")
        for sentinel, key in _SLOTS:
            text = text.replace(json.dumps(sentinel)[1:-1], f"%({key})s")
        self.fmt = text.encode()
        # the fingerprint: FNV-1a over sorted "name 0xff value 0xff"; hash the constant
        # prefix once, keep the rest as constant bytes and number slots
        data = b"".join(b"%s\xff%s\xff" % (n.encode(), labels[n].encode()) for n in sorted(labels))
        pieces = re.split(
            b"(" + re.escape(_SEQ_D.encode()) + b"|" + re.escape(_SEQ_8.encode()) + b")", data
        )
        self.h0 = _fnv(pieces[0])
        self.steps: list[bytes | str] = [
            ("d" if piece == _SEQ_D.encode() else "e") if k % 2 else piece
            for k, piece in enumerate(pieces[1:], start=1)
            if piece
        ]
        self.cached: tuple[int, list[int]] = (-1, [])  # (block, its hashes): one attribute

    def fingerprint(self, seq: int, wanted: Any) -> int:
        """The hash for ``seq``, from the block of ``FP_BLOCK`` numbers it falls in
        (``wanted(seqs)``: which numbers of a block this type is built for)."""
        block = seq // FP_BLOCK
        cached_block, hashes = self.cached
        if block != cached_block:
            import numpy as np

            seqs = np.arange(block * FP_BLOCK, (block + 1) * FP_BLOCK, dtype=np.int64)
            mask = wanted(seqs)
            full = np.zeros(FP_BLOCK, dtype=np.uint64)
            full[mask] = _fnv_many(self.h0, self.steps, seqs[mask])
            hashes = full.tolist()
            self.cached = (block, hashes)
        return hashes[seq - block * FP_BLOCK]

    def fingerprint_one(self, seq: int) -> int:
        """The hash for ``seq`` alone, in plain Python from the cached prefix state: for a
        template used a few times per block (one per pool workload), ~15 us instead of a
        whole block's numpy pass."""
        h = self.h0
        for step in self.steps:
            if isinstance(step, str):
                step = b"%d" % seq if step == "d" else b"%08d" % seq
            h = _fnv(step, h)
        return h

    def render(self, seq: int, h: int) -> tuple[bytes, str]:
        fp = f"{h:016x}"
        body = self.fmt % {
            b"d": b"%d" % seq,
            b"e": b"%08d" % seq,
            b"t": _starts_at_now(),
            b"f": fp.encode(),
        }
        return body, fp


class PayloadFactory:
    """Makes request bodies for a load run: ``body(seq)`` → (bytes, alert type, fingerprint).

    ``api`` is the profile (``kubernaut-legacy`` also varies the alertname when unique);
    ``run`` (default: a fresh token) names the run in resource names and in the label
    ``kubetest_run``, which with ``kubetest_seq`` lets a RemediationRequest be traced back
    to its request. Picklable (plain data only) so shards build the same payloads remotely.
    """

    def __init__(
        self,
        types: list[str],
        *,
        unique: bool = True,
        seed: int = 0,
        api: str = "webhook",
        namespace: str = "test-workloads",
        run: str | None = None,
    ) -> None:
        if not types:
            raise ValueError("at least one alert type is needed")
        for t in types:
            if t != "random" and t not in ALERT_TYPES:
                raise ValueError(f"unknown alert type {t!r}")
        self.types = list(types)
        self.unique = unique
        self.seed = seed
        self.api = api
        self.namespace = namespace
        self.run = run if run is not None else new_run_token()

    # -- pickling: plain data only; templates are rebuilt where the factory is used
    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_c_")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def body(self, seq: int, workload: str | None = None) -> tuple[bytes, str, str]:
        """The request body for ``seq`` (naming ``workload`` when given): what
        ``reference_body`` builds (startsAt = now), rendered from a per-type template."""
        alert_type = self.types[seq % len(self.types)]
        if alert_type == "random":
            alert_type = random.Random(self.seed * 1_000_003 + seq).choice(_SORTED_TYPES)
        try:
            template = self.__dict__["_c_templates"][(alert_type, workload)]
        except KeyError:
            template = self._template(alert_type, workload)
        if template is None or not 0 <= seq < _FAST_SEQ_LIMIT:
            return self.reference_body(seq, workload)
        if workload is None:
            h = template.fingerprint(seq, self._wanted(alert_type))
        else:  # one template per workload: each sees a few numbers of a block
            h = template.fingerprint_one(seq)
        body, fp = template.render(seq, h)
        return body, alert_type, fp

    def warm(self, workloads: list[str] | None = None) -> None:
        """Build the templates of every type this factory can send, for each workload when
        given (the engine calls this before a run starts: ~2 ms per template, better not
        spent on the first requests)."""
        kinds = _SORTED_TYPES if "random" in self.types else self.types
        for workload in workloads or [None]:
            for alert_type in dict.fromkeys(kinds):
                if (alert_type, workload) not in self.__dict__.get("_c_templates", {}):
                    self._template(alert_type, workload)

    def reference_body(self, seq: int, workload: str | None = None) -> tuple[bytes, str, str]:
        """The body built the slow, obvious way (``make_alert`` + ``webhook``): the
        definition ``body`` is checked against."""
        alert_type = self.types[seq % len(self.types)]
        rng = random.Random(self.seed * 1_000_003 + seq) if alert_type == "random" else None
        alert = make_alert(
            alert_type, seq, unique=self.unique, rng=rng, namespace=self.namespace,
            run=self.run, alertname_suffix=self.api == "kubernaut-legacy", workload=workload,
        )  # fmt: skip
        payload = webhook([alert])
        return (
            json.dumps(payload, separators=(",", ":")).encode(),
            alert.labels["alert_type"],
            alert.fingerprint,
        )

    def _wanted(self, alert_type: str) -> Any:
        """Which sequence numbers of a block can be of ``alert_type``."""
        try:  # per request: the common case first, without building a default dict
            return self.__dict__["_c_wanted"][alert_type]
        except KeyError:
            pass
        cache = self.__dict__.setdefault("_c_wanted", {})
        if alert_type not in cache:
            n = len(self.types)
            slots = [k for k, t in enumerate(self.types) if t == alert_type]
            if "random" in self.types or len(slots) == n:
                cache[alert_type] = lambda seqs: slice(None)
            else:
                import numpy as np

                cache[alert_type] = lambda seqs: np.isin(seqs % n, slots)
        return cache[alert_type]

    def _template(self, alert_type: str, workload: str | None = None) -> _Template | None:
        """Build (and check against the reference) the template of ``alert_type`` naming
        ``workload``; None, with a warning, if it does not reproduce the reference body
        (the slow path then)."""
        template: _Template | None = _Template(self, alert_type, workload)
        probe = PayloadFactory([alert_type], unique=self.unique, seed=self.seed, api=self.api,
                               namespace=self.namespace, run=self.run)  # fmt: skip
        for seq in (0, 7, 123_456_789):
            assert template is not None
            if workload is None:  # check the hash path ``body`` takes for this template
                h = int(_fnv_many(template.h0, template.steps, _int64([seq]))[0])
            else:
                h = template.fingerprint_one(seq)
            fast, fp = template.render(seq, h)
            ref, _, ref_fp = probe.reference_body(seq, workload)
            got, want = json.loads(fast), json.loads(ref)
            a, b = (_parse_starts(doc["alerts"][0].pop("startsAt")) for doc in (got, want))
            close = a is not None and b is not None and abs(a - b) < 1.0
            if got != want or fp != ref_fp or not close:
                warnings.warn(
                    f"kubetest: the fast body of {alert_type!r} differs from the reference "
                    "one; building bodies the slow way",
                    RuntimeWarning,
                    stacklevel=3,
                )
                template = None
                break
        self.__dict__.setdefault("_c_templates", {})[(alert_type, workload)] = template
        return template


_SORTED_TYPES = sorted(ALERT_TYPES)


def _parse_starts(text: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _int64(values: list[int]) -> Any:
    import numpy as np

    return np.asarray(values, dtype=np.int64)
