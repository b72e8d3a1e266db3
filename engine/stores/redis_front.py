"""Redis cache in front of a PostgresStore: reads are pipelined ``HMGET``s, misses are read from
PostgreSQL and filled in; writes go to PostgreSQL and only after its COMMIT touch Redis.

Counts in Redis are a cache of PostgreSQL, never the source of truth, and are never incremented
there. A write *invalidates* its keys after the commit (replacing a per-bucket version first, in
one MULTI), and a fill only lands if its bucket's version is still the one read before the
PostgreSQL read. So a fill can never put back a value older than a committed write whose
invalidation already ran, and nothing in Redis can be counted twice: a write is a delta in
PostgreSQL, a cached value is an absolute copy.

An invalidation owed by a writer that dies before Redis gets it must not leave stale values
behind, so what a reader trusts is decided in PostgreSQL (one extra read per ``fetch``):

* every cached value lives in the namespace of a **cache epoch** kept in PostgreSQL;
* a write's transaction records that its writer owes Redis an invalidation (one row per writer,
  ``neurogate_cache_unconfirmed``, with its server process id) and reads the epoch; the row goes
  once the writer's invalidations are all delivered (after a blip of Redis: replayed first);
* a reader serves from Redis unless another writer's debt is known to have failed, is older
  than ``IN_FLIGHT_SECONDS``, or is a dead writer's (its PostgreSQL server process is gone);
  then it reads PostgreSQL;
* a dead writer's debt, or one older than ``pending_grace``, ends the epoch, in a transaction
  that serialises with every write's COMMIT: what was cached before is then in a namespace
  nobody reads, dropped by the reader that ended it (or expired).

Layout (``P`` = prefix, default ``neurogate:{<store id>}``, one hash slot; ``E`` = epoch):
``P:E:b:<bucket>`` hashes, field = 8-byte key, value = 24 bytes (n, n0, n1 as little-endian
int64); ``P:E:ver`` hash of bucket versions. Memory is bounded twice: a bucket lives at most
``ttl`` seconds after it was created (``PEXPIRE NX``; the versions ``ttl`` after the last write)
and holds at most ``max_keys / buckets`` keys (a full bucket is dropped and refilled).

If Redis fails, reads and writes go to PostgreSQL alone (counted in ``stats``) and Redis is tried
again after an exponential backoff; owed invalidations are replayed before this client serves
from Redis again (past ``max_pending`` keys, the epoch ends instead).
"""

from __future__ import annotations

import itertools
import logging
import os
import random
import re
import socket
import time
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from neurogate.engine.keys import NCOLS
from neurogate.engine.stores.base import DelegatingStore, OutcomeUnknown, check_keys
from neurogate.engine.stores.postgres import PostgresStore, StoreUnavailable

log = logging.getLogger(__name__)

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
_VALUE = np.dtype("<i8")
_VALUE_BYTES = NCOLS * 8
_FILL_PAIRS = 2000  # field/value pairs per script call (Lua's unpack limit is ~8000 values)
_HDEL_FIELDS = 10_000
_READ_CHUNK = 200_000
# A live writer's debt younger than this is in flight: its invalidation normally follows within
# milliseconds, and readers go on trusting the cache (as they would just before its COMMIT).
IN_FLIGHT_SECONDS = 1.0

# KEYS: bucket hash, versions hash. ARGV: bucket id, expected version, ttl ms, cap, f1, v1, ...
_FILL = """
local v = redis.call('HGET', KEYS[2], ARGV[1])
if not v then v = '0' end
if v ~= ARGV[2] then return 0 end
if redis.call('HLEN', KEYS[1]) + (#ARGV - 4) / 2 > tonumber(ARGV[4]) then
  redis.call('UNLINK', KEYS[1])
end
redis.call('HSET', KEYS[1], unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[1], ARGV[3], 'NX')
return 1
"""


class CachedStore(DelegatingStore):
    """A PostgresStore with a Redis read cache; see the module docstring.

    ``stats`` counts keys hit, missed, filled (and not filled because a write raced them) and
    invalidated, Redis errors, keys served from PostgreSQL because Redis was down or not to be
    trusted (``fallback_keys``), invalidations owed to Redis and epochs this client ended.
    """

    backend: PostgresStore

    def __init__(  # noqa: PLR0913  (the cache's settings, most with defaults)
        self,
        backend: PostgresStore,
        redis_url: str | None = None,
        *,
        prefix: str | None = None,
        ttl: float = 3600.0,
        max_keys: int = 2_000_000,
        buckets: int = 64,
        socket_timeout: float = 2.0,
        backoff_max: float = 30.0,
        max_pending: int = 5_000_000,
        pending_grace: float = 10.0,
        own_backend: bool = True,
    ) -> None:
        if buckets < 1 or buckets & (buckets - 1):
            raise ValueError("buckets must be a power of two")
        if not pending_grace >= 0:
            raise ValueError("pending_grace must be seconds >= 0")
        super().__init__(backend)
        self.url = "redis+" + backend.url
        self.prefix = prefix if prefix is not None else f"neurogate:{{{backend.store_id}}}"
        self.ttl_ms = max(1, int(ttl * 1000))
        self.cap = max(16, max_keys // buckets)
        self.buckets = buckets
        self.backoff_max = backoff_max
        self.max_pending = max_pending
        self.pending_grace = pending_grace
        self.own_backend = own_backend
        # names this client in neurogate_cache_unconfirmed: which process owes invalidations
        self.writer = f"{socket.gethostname()}/{os.getpid()}/{os.urandom(4).hex()}"
        self.stats = {"hits": 0, "misses": 0, "fills": 0, "fills_skipped": 0, "invalidated": 0,
                      "redis_errors": 0, "fallback_keys": 0, "pending_invalidations": 0,
                      "cache_clears": 0}
        url = redis_url or os.environ.get("NEUROGATE_REDIS_URL") or DEFAULT_REDIS_URL
        # No client-side retries: a failure falls back to PostgreSQL at once and we back off.
        self._r = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout,
            retry=Retry(NoBackoff(), 0), retry_on_timeout=False,
        )
        self._fill_script = self._r.register_script(_FILL)
        self._bucket_ids = [str(i).encode() for i in range(buckets)]
        self._mask = np.uint64(buckets - 1)
        self._bits = buckets.bit_length() - 1
        self._retry_at = 0.0
        self._delay = 0.0
        self.epoch: int | None = None  # the namespace of the last epoch seen
        self._ver_key = b""
        self._bucket_keys: list[bytes] = []
        self._trusted: int | None = None  # epoch of the last read that found nothing owed
        self._pending: list[np.ndarray] = []  # owed invalidations of the current epoch
        self._owing = False  # this writer's debt is recorded in PostgreSQL
        self._must_end_epoch = False

    def __repr__(self) -> str:
        return f"CachedStore({self.backend.url!r}, prefix={self.prefix!r})"

    # -- epochs and debts ----------------------------------------------------------------------

    def _namespace(self, epoch: int) -> tuple[bytes, list[bytes]]:
        """The versions hash and the bucket hashes of ``epoch``."""
        base = f"{self.prefix}:{epoch}"
        return f"{base}:ver".encode(), [f"{base}:b:{i}".encode() for i in range(self.buckets)]

    def _observe(self, epoch: int) -> None:
        """Move to ``epoch``'s namespace. Invalidations owed in an earlier epoch are moot: an
        epoch ends after every write of it committed, and nothing is read from it afterwards."""
        if epoch == self.epoch:
            return
        self.epoch = epoch
        self._ver_key, self._bucket_keys = self._namespace(epoch)
        self._trusted = None
        self._pending = []
        self.stats["pending_invalidations"] = 0

    def _ended(self, old: int) -> None:
        """Count an epoch this client ended and drop its namespace (else it expires)."""
        self.stats["cache_clears"] += 1
        if time.monotonic() < self._retry_at:
            return
        ver, buckets = self._namespace(old)
        try:
            self._r.unlink(ver, *buckets)
        except RedisError as exc:
            self._failed(exc)

    def _settle(self) -> bool:
        """Pay this writer's debts; whether Redis may be used now (not backing off, nothing
        owed). Owed invalidations are replayed, or past ``max_pending`` the epoch is ended;
        then the record in PostgreSQL is dropped. Never raises: a debt left stays recorded."""
        if self._must_end_epoch:
            old = self.epoch
            try:
                self._observe(self.backend.new_cache_epoch(self.writer))
            except StoreUnavailable as exc:
                log.warning("could not end the Redis cache epoch: %s", exc)
                return False
            self._must_end_epoch = self._owing = False
            if old is not None:
                self._ended(old)
        if time.monotonic() < self._retry_at:
            return False
        if self._pending:
            try:
                owed = self._pending[0] if len(self._pending) == 1 else self._unique(
                    np.concatenate(self._pending))[0]  # one apply's keys are unique already
                self._send_invalidations(owed)
            except RedisError as exc:
                self._failed(exc)
                try:  # readers stop waiting for them
                    self.backend.invalidations_failed(self.writer)
                except StoreUnavailable as pg_exc:
                    log.warning("could not record failed Redis invalidations: %s", pg_exc)
                return False
            self._pending = []
            self.stats["pending_invalidations"] = 0
        if self._owing:
            try:
                self.backend.confirm_invalidations(self.writer)
                self._owing = False
            except StoreUnavailable as exc:  # readers wait, then end the epoch: still correct
                log.warning("could not confirm Redis invalidations: %s", exc)
        return True

    def _readable(self) -> int | None:
        """The epoch whose cached values may be served now, or None: read PostgreSQL."""
        if not self._settle():
            return None
        try:
            state = self.backend.cache_epoch(self.writer, self.pending_grace,
                                             min(IN_FLIGHT_SECONDS, self.pending_grace))
        except StoreUnavailable:
            if self._trusted is None:
                raise
            return self._trusted  # PostgreSQL is down: nothing can commit meanwhile
        self._observe(state.epoch)
        if state.replaced is not None:
            self._ended(state.replaced)
        self._trusted = None if state.blocking else state.epoch
        return self._trusted

    def _failed(self, exc: Exception) -> None:
        """Count a Redis failure and back off (0.5 s doubling to ``backoff_max``, jittered)."""
        self.stats["redis_errors"] += 1
        if self._delay == 0.0:
            log.warning("Redis cache unavailable (%s); serving from PostgreSQL", exc)
        self._delay = min(self.backoff_max, max(0.5, self._delay * 2))
        self._retry_at = time.monotonic() + self._delay * (0.5 + random.random() / 2)

    def _ok(self) -> None:
        if self._delay:
            log.warning("Redis cache reachable again")
        self._delay = 0.0

    # -- bucket grouping -----------------------------------------------------------------------

    def _groups(self, keys: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]],
                                                   list[bytes]]:
        """Order that sorts ``keys`` by bucket, its (bucket, start, end) runs, and the keys'
        8-byte field names in that order."""
        bucket = (keys & self._mask).astype(np.int64)
        if bool((bucket[1:] >= bucket[:-1]).all()):  # already bucket-major (see _unique)
            order = np.arange(keys.size)
            sb = bucket
        else:
            order = np.argsort(bucket, kind="stable")
            sb = bucket[order]
        edges = np.flatnonzero(np.r_[True, sb[1:] != sb[:-1], True])
        runs = [(int(sb[s]), int(s), int(e)) for s, e in itertools.pairwise(edges.tolist())]
        fields = np.frombuffer(keys[order].astype("<u8").tobytes(), dtype="V8").tolist()
        return order, runs, fields

    def _unique(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distinct keys in bucket-major order, and the inverse index: one sort does both, by
        sorting the keys rotated so that their bucket bits lead."""
        keys = np.ascontiguousarray(keys, dtype=np.uint64).ravel()
        if self._bits == 0:
            uniq, inverse = np.unique(keys, return_inverse=True)
            return uniq, inverse.ravel()
        lead, rest = np.uint64(64 - self._bits), np.uint64(self._bits)
        rot, inverse = np.unique((keys << lead) | (keys >> rest), return_inverse=True)
        return (rot << rest) | (rot >> lead), inverse.ravel()

    # -- reads ---------------------------------------------------------------------------------

    def fetch(self, keys: np.ndarray) -> np.ndarray:
        uniq, inverse = self._unique(keys)
        found = np.zeros((uniq.size, NCOLS), dtype=np.int64)
        if uniq.size and self._readable() is None:
            self.stats["fallback_keys"] += uniq.size
            found = self.backend.fetch(uniq)
        else:
            for i in range(0, uniq.size, _READ_CHUNK):
                part = uniq[i : i + _READ_CHUNK]
                found[i : i + part.size] = self._fetch_unique(part)
        rows: np.ndarray = found[inverse]  # numpy's stubs type indexing as Any
        return rows

    def _fetch_unique(self, keys: np.ndarray) -> np.ndarray:
        if time.monotonic() < self._retry_at:  # an earlier chunk failed
            self.stats["fallback_keys"] += keys.size
            return self.backend.fetch(keys)
        order, runs, fields = self._groups(keys)
        try:
            pipe = self._r.pipeline(transaction=False)
            pipe.hmget(self._ver_key, [self._bucket_ids[b] for b, _, _ in runs])
            for b, s, e in runs:
                pipe.hmget(self._bucket_keys[b], fields[s:e])
            replies = pipe.execute()
        except RedisError as exc:
            self._failed(exc)
            self.stats["fallback_keys"] += keys.size
            return self.backend.fetch(keys)
        self._ok()
        versions = {b: v or b"0" for (b, _, _), v in zip(runs, replies[0], strict=True)}
        flat = np.empty(keys.size, dtype=object)
        flat[:] = list(itertools.chain.from_iterable(replies[1:]))
        hit_sorted = flat != None  # noqa: E711 - elementwise on an object array
        data = b"".join(flat[hit_sorted])
        if len(data) != _VALUE_BYTES * int(hit_sorted.sum()):  # a foreign value: treat as miss
            hit_sorted = np.fromiter((v is not None and len(v) == _VALUE_BYTES for v in flat),
                                     dtype=bool, count=flat.size)
            data = b"".join(flat[hit_sorted])
        found = np.zeros((keys.size, NCOLS), dtype=np.int64)
        found[order[hit_sorted]] = np.frombuffer(data, dtype=_VALUE).reshape(-1, NCOLS)
        miss = np.zeros(keys.size, dtype=bool)
        miss[order[~hit_sorted]] = True
        n_miss = int(miss.sum())
        self.stats["hits"] += keys.size - n_miss
        self.stats["misses"] += n_miss
        if n_miss:
            got = self.backend.fetch(keys[miss])
            found[miss] = got
            self._fill(keys[miss], got, versions)
        return found

    def _fill(self, keys: np.ndarray, counts: np.ndarray, versions: dict[int, bytes]) -> None:
        """Cache freshly read counts (zeros too), each bucket only if no write touched it since
        its version was read; failures are counted, never raised."""
        order, runs, fields = self._groups(keys)
        values = np.frombuffer(np.ascontiguousarray(counts[order], dtype=_VALUE).tobytes(),
                               dtype=f"V{_VALUE_BYTES}").tolist()
        try:
            pipe = self._r.pipeline(transaction=False)
            sizes: list[int] = []
            for b, s, e in runs:
                for c in range(s, e, _FILL_PAIRS):
                    stop = min(e, c + _FILL_PAIRS)
                    args: list[Any] = [b, versions[b], self.ttl_ms, self.cap]
                    pairs: list[bytes] = [b""] * (2 * (stop - c))
                    pairs[0::2] = fields[c:stop]
                    pairs[1::2] = values[c:stop]
                    args.extend(pairs)
                    self._fill_script(keys=[self._bucket_keys[b], self._ver_key], args=args,
                                      client=pipe)
                    sizes.append(stop - c)
            results = pipe.execute()
        except RedisError as exc:
            self._failed(exc)
            return
        landed = sum(n for n, r in zip(sizes, results, strict=True) if r == 1)
        self.stats["fills"] += landed
        self.stats["fills_skipped"] += keys.size - landed

    # -- writes --------------------------------------------------------------------------------

    def apply(
        self,
        keys: np.ndarray,
        deltas: np.ndarray,
        positions: Mapping[str, int] | None = None,
        meta: Mapping[str, bytes] | None = None,
        *,
        new: np.ndarray | None = None,
        expect: Mapping[str, int | None] | None = None,
    ) -> None:
        keys, deltas = check_keys(keys, deltas, new)
        touched, _ = self._unique(keys)
        if touched.size == 0:
            self.backend.apply(keys, deltas, positions, meta, new=new, expect=expect)
            return
        try:  # raises: Redis is left alone
            epoch = self.backend.apply_unconfirmed(
                self.writer, keys, deltas, positions, meta, new=new, expect=expect,
                failed=bool(self._pending) or time.monotonic() < self._retry_at)
        except OutcomeUnknown:  # it may have landed, in an epoch not known here: end it
            self._owing = self._must_end_epoch = True
            raise
        self._owing = True
        self._observe(epoch)
        if not self._must_end_epoch:
            self._pending.append(touched)
            self.stats["pending_invalidations"] += touched.size
        # sent now unless Redis is down; never raises: the write committed
        if not self._settle() and self.stats["pending_invalidations"] > self.max_pending:
            log.warning("over %d invalidations owed to Redis; ending the cache epoch instead",
                        self.max_pending)
            self._must_end_epoch = True
            self._pending = []
            self.stats["pending_invalidations"] = 0
            self._settle()

    def _send_invalidations(self, keys: np.ndarray) -> None:
        """One MULTI: give each touched bucket a new version (aborting racing fills), then drop
        the keys' cached values."""
        _, runs, fields = self._groups(keys)
        pipe = self._r.pipeline(transaction=True)
        pipe.hset(self._ver_key, mapping=self._new_versions(b for b, _, _ in runs))
        pipe.pexpire(self._ver_key, self.ttl_ms)
        for b, s, e in runs:
            for c in range(s, e, _HDEL_FIELDS):
                pipe.hdel(self._bucket_keys[b], *fields[c : min(e, c + _HDEL_FIELDS)])
        pipe.execute()
        self._ok()
        self.stats["invalidated"] += keys.size

    def _new_versions(self, buckets: Iterable[int]) -> dict[Any, Any]:
        """Fresh random bucket versions: unlike counters they cannot come back to a value a
        reader saw, even if Redis restarts empty in between."""
        token = os.urandom(8).hex().encode()
        return {self._bucket_ids[b]: token for b in buckets}

    def clear_cache(self) -> int:
        """Drop every cached count of this store: end the epoch, past every epoch found in
        Redis (a database restored from a backup holds an older one), so that readers move to
        a namespace never used; then remove the hashes found (and those of the layout before
        epochs). Returns the number of hashes removed."""
        own = re.compile(re.escape(self.prefix) + r":(?:(\d+):)?(?:b:\d+|ver)")
        found: list[bytes] = []
        newest = 0
        for key in self._r.scan_iter(match=_glob_escape(self.prefix) + ":*", count=1000):
            if m := own.fullmatch(key.decode(errors="replace")):
                found.append(key)
                newest = max(newest, int(m.group(1) or 0))
        self._observe(self.backend.new_cache_epoch(self.writer, after=newest))
        self._owing = self._must_end_epoch = False
        self.stats["cache_clears"] += 1
        removed = 0
        for i in range(0, len(found), 1000):
            removed += int(self._r.unlink(*found[i : i + 1000]))
        return removed

    # -- everything else is PostgreSQL's (DelegatingStore forwards the rest) -----------------

    def status(self) -> dict[str, Any]:
        """PostgreSQL's status plus the cache's counters, prefix and epoch."""
        out = self.backend.status()
        out["cache"] = {"prefix": self.prefix, "epoch": self.epoch, **self.stats}
        return out

    def close(self) -> None:
        if self._owing:
            self._settle()  # a debt left here makes readers wait pending_grace, then start over
        self._r.close()
        if self.own_backend:
            self.backend.close()


def _glob_escape(text: str) -> str:
    """Escape Redis glob metacharacters so a prefix matches literally in SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
