"""What one ``serve`` process knows about itself, and the Prometheus registry that shows it.

The per-key gauges are read from the database at scrape time (:class:`KeyCollector`, a bounded query), so every
process and every replica reports the same truth and nothing is kept in memory. What only this process can know
— its sweeps, the answers Slack gave it — lives in :class:`Monitor`, which the scheduler job and the Slack client
feed and ``/healthz`` and ``/metrics`` read. Other features add their own collectors with
:meth:`Monitor.add_collector` (key rollout adds ``coupang_keybot_rollout_deliveries{state}`` there).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, time, timedelta

from prometheus_client import CollectorRegistry, Counter, GCCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from bot.config import Settings
from bot.heartbeat import Heartbeat
from bot.services.base import Clock
from bot.services.overview import OverviewService
from bot.services.reminders import Undeliverable

logger = logging.getLogger(__name__)

# Slack answers that mean the bot token no longer works: nothing will reach Slack until a person fixes it
SLACK_AUTH_ERRORS = frozenset({"invalid_auth", "token_revoked", "account_inactive", "not_authed"})
# why POST /rollout/confirm refused a request (bot/confirm.py, RolloutService.confirm); each starts at 0
CONFIRM_REFUSALS = ("malformed", "too_large", "rate_limited", "unknown", "signature", "generation", "proof")


class KeyCollector(Collector):
    """Per-key and per-phase gauges, computed from the database on every scrape."""

    def __init__(self, overview: OverviewService, settings: Settings):
        self.overview = overview
        self.settings = settings

    def collect(self) -> Iterator[Metric]:
        facts = self.overview.overview()
        days = GaugeMetricFamily(
            "coupang_key_days_left", "Days until the key expires (KEYBOT_TIMEZONE); negative once expired",
            labels=["vendor_id", "label", "owner", "integrator"],  # owner, integrator: for Alertmanager routes
        )  # fmt: skip
        expiry = GaugeMetricFamily(
            "coupang_key_expiry_timestamp_seconds", "The first second after the key's expiry day",
            labels=["vendor_id"],
        )  # fmt: skip
        generation = GaugeMetricFamily("coupang_key_generation", "Key generation (1 + reissues)", labels=["vendor_id"])
        verified = GaugeMetricFamily(
            "coupang_key_verification_ok", "1 when the last definitive check with Coupang worked, 0 when it failed",
            labels=["vendor_id"],
        )  # fmt: skip
        reissue = GaugeMetricFamily(
            "coupang_key_reissue_request_open", "1 while a reissue request is pending or approved",
            labels=["vendor_id"],
        )  # fmt: skip
        tz = self.settings.timezone
        for key in facts.keys:
            end = datetime.combine(key.expires_on + timedelta(days=1), time(0), tzinfo=tz)
            days.add_metric([key.vendor_id, key.label, key.owner_id or "", key.integrator or ""], key.days_left)
            expiry.add_metric([key.vendor_id], end.timestamp())
            generation.add_metric([key.vendor_id], key.generation)
            reissue.add_metric([key.vendor_id], 1 if key.open_request else 0)
            if key.verify_ok is not None:
                verified.add_metric([key.vendor_id], 1 if key.verify_ok else 0)
        phases = GaugeMetricFamily("coupang_keybot_keys", "Registered keys by phase", labels=["phase"])
        for phase, count in facts.phases.items():
            phases.add_metric([phase], count)
        yield from (days, expiry, generation, verified, reissue, phases)


class _SweepCollector(Collector):
    def __init__(self, monitor: Monitor):
        self.monitor = monitor

    def collect(self) -> Iterator[Metric]:
        last = self.monitor.last_success_at
        if last is not None:  # absent until this process has swept: a --no-scheduler replica never reports it
            yield GaugeMetricFamily(
                "coupang_keybot_reminder_sweep_last_success_timestamp_seconds",
                "When this process last finished a reminder sweep without a failure",
                value=last.timestamp(),
            )


class UndeliverableCollector(Collector):
    """``coupang_keybot_undeliverable_channels`` (channels refusing reminders) and, per key,
    ``coupang_key_reminder_undeliverable{vendor_id,channel,error}``: read from the database at scrape time."""

    def __init__(self, problems: Callable[[], Sequence[Undeliverable]]):
        self.problems = problems

    def collect(self) -> Iterator[Metric]:
        problems = self.problems()
        channels = GaugeMetricFamily(
            "coupang_keybot_undeliverable_channels",
            "Channels where Slack refuses the bot's reminders (not invited, archived or gone)",
            value=len({p.channel_id for p in problems}),
        )
        keys = GaugeMetricFamily(
            "coupang_key_reminder_undeliverable", "1 while the key's reminders cannot be posted in its channel",
            labels=["vendor_id", "channel", "error"],
        )  # fmt: skip
        for problem in problems:
            for vendor_id in problem.vendor_ids:
                keys.add_metric([vendor_id, problem.channel_id, problem.error], 1)
        yield from (channels, keys)


class RolloutCollector(Collector):
    """``coupang_keybot_rollout_deliveries{state}``: deliveries of the current keys to their consumers, by state."""

    STATES = ("pending", "delivered", "confirmed", "failed")

    def __init__(self, states: Callable[[], Mapping[str, int]]):
        self.states = states

    def collect(self) -> Iterator[Metric]:
        counts = self.states()
        gauge = GaugeMetricFamily(
            "coupang_keybot_rollout_deliveries", "Key deliveries to consumers, by state", labels=["state"]
        )
        for state in self.STATES:
            gauge.add_metric([state], counts.get(state, 0))
        yield gauge


class Monitor:
    def __init__(self, settings: Settings, clock: Clock, overview: OverviewService):
        self.clock = clock
        self.heartbeat = Heartbeat(settings.heartbeat_url)
        self.registry = CollectorRegistry()
        self.reminders_posted = Counter(
            "coupang_keybot_reminders_posted", "Reminders posted to Slack", registry=self.registry
        )
        self.slack_errors = Counter(
            "coupang_keybot_slack_errors",
            "Slack Web API calls answered with an error, by method and error",
            ["method", "error"],
            registry=self.registry,
        )
        self.confirm_refusals = Counter(
            "coupang_keybot_rollout_confirm_refused",
            "POST /rollout/confirm requests refused, by reason (unknown: no such vendor ID/consumer; signature: bad "
            "or stale signature; generation, proof: signed by the consumer but stale or wrong)",
            ["reason"],
            registry=self.registry,
        )
        for reason in CONFIRM_REFUSALS:
            self.confirm_refusals.labels(reason=reason)
        ProcessCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(KeyCollector(overview, settings))
        self.registry.register(_SweepCollector(self))
        self._lock = threading.Lock()
        self.scheduler_started_at: datetime | None = None
        self.last_sweep_at: datetime | None = None  # finished, with or without failures
        self.last_success_at: datetime | None = None
        self.slack_state: str = "unknown"  # "ok", "unknown", or the auth error Slack last answered

    def add_collector(self, collector: Collector) -> None:
        """More metrics for ``/metrics`` (e.g. rollout deliveries), read at scrape time like the key gauges."""
        self.registry.register(collector)

    # ------------------------------------------------------------ fed by serve, the scheduler and the Slack client

    def started(self, *, scheduler: bool) -> None:
        if scheduler:
            self.scheduler_started_at = self.clock.now()
        self.heartbeat.start()

    def sweep_finished(self, *, ok: bool, posted: int = 0) -> None:
        now = self.clock.now()
        with self._lock:
            self.last_sweep_at = now
            if ok:
                self.last_success_at = now
        self.reminders_posted.inc(posted)
        if ok:
            self.heartbeat.success()
        else:
            self.heartbeat.fail()

    def confirm_refused(self, reason: str) -> None:
        self.confirm_refusals.labels(reason=reason).inc()

    def slack_answered(self, method: str, error: str | None) -> None:
        """Every Web API answer: an error is counted, and an auth error marks Slack as failing until a success."""
        if error is not None:
            self.slack_errors.labels(method=method, error=error).inc()
        with self._lock:
            if error is None:
                self.slack_state = "ok"
            elif error in SLACK_AUTH_ERRORS:
                self.slack_state = error
