"""The playbook model: what a playbook may say, validated with pydantic (``extra="forbid"``).

Structural rules live here (types, unknown keys, durations, crons, regexes); rules that need the
action registry or the expression parser live in ``lint``.
"""

from __future__ import annotations

import builtins
import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from runbook.core.durations import parse_duration
from runbook.core.identifiers import check_identifier

Duration = Annotated[float, BeforeValidator(parse_duration)]
IDENT = r"^[a-z][a-z0-9_]*$"
RESERVED_PARAMS = {"incident", "requested_by", "dry_run", "trigger", "run", "steps", "params"}

PARAM_TYPES: dict[str, type] = {
    "string": str,
    "identifier": str,  # a table name: name or schema.name, see runbook.core.identifiers
    "integer": int,
    "number": float,
    "boolean": bool,
    "list": list,
    "object": dict,
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ParamSpec(Strict):
    """One run parameter. ``identifier`` is a table name (``name`` or ``schema.name``, checked
    against a strict pattern; empty means not set): the only kind of value that may choose which
    table a PostgreSQL step touches (``table:``), never pasted into SQL text. ``string`` params may
    be narrowed with ``pattern:`` (a regular expression the whole value must match) and, like every
    type, with ``enum:``."""

    type: Literal["string", "identifier", "integer", "number", "boolean", "list", "object"] = "string"
    default: Any = None
    description: str = ""
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    enum: list[Any] | None = None
    pattern: str | None = None

    def python_type(self) -> builtins.type[Any]:
        return PARAM_TYPES[self.type]

    def coerce(self, name: str, value: Any) -> Any:
        """Convert a value given on the command line or by a trigger; ValueError says why not."""
        value = self._coerce_type(name, value)
        if value is None:
            return None
        if self.enum is not None and value not in self.enum:
            raise ValueError(f"param {name}: {value!r} is not one of {self.enum}")
        return value

    def _from_text(self, name: str, kind: builtins.type[Any], value: str) -> Any:
        """A value given as text (``-p k=v``, a form field) read as the param's type."""
        if kind is bool:
            low = value.strip().lower()
            if low not in {"true", "false", "yes", "no", "1", "0"}:
                raise ValueError(f"param {name}: expected a boolean, got {value!r}")
            return low in {"true", "yes", "1"}
        if kind in (int, float):
            try:
                return kind(value)
            except ValueError:
                raise ValueError(f"param {name}: expected {self.type}, got {value!r}") from None
        if kind in (list, dict):
            import json

            try:
                return json.loads(value)
            except ValueError:
                raise ValueError(f"param {name}: expected JSON {self.type}, got {value!r}") from None
        return value

    def _coerce_type(self, name: str, value: Any) -> Any:
        kind = self.python_type()
        if value is None:
            return None
        if isinstance(value, str):
            value = self._from_text(name, kind, value)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ValueError(f"param {name}: expected {self.type}, got {type(value).__name__} {value!r}")
        if self.type == "identifier" and value == "":
            return None  # empty: not set (``when: "{{ params.table }}"`` skips the step)
        self._check_bounds(name, value)
        return value

    def _check_bounds(self, name: str, value: Any) -> None:
        """What the playbook declares beyond the type: identifier shape, pattern, minimum, maximum."""
        if self.type == "identifier":
            try:
                check_identifier(value)
            except ValueError as exc:
                raise ValueError(f"param {name}: {exc}") from None
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            raise ValueError(f"param {name}: {value!r} does not match the pattern {self.pattern!r}")
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"param {name}: {value} is below the minimum {self.minimum:g}")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"param {name}: {value} is above the maximum {self.maximum:g}")

    @model_validator(mode="after")
    def _default_fits(self) -> ParamSpec:
        if self.pattern is not None:
            if self.type not in ("string", "identifier"):
                raise ValueError(f"pattern applies to string and identifier params, not {self.type}")
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"bad regular expression {self.pattern!r}: {exc}") from None
        if self.enum is not None:
            if not self.enum:
                raise ValueError("enum needs at least one value")
            for item in self.enum:
                if self._coerce_type("enum value", item) is None:
                    raise ValueError("enum values cannot be empty")
        if self.default is not None:
            self.coerce("default", self.default)
        return self


class PagerDutyTrigger(Strict):
    event_types: list[str] = Field(default_factory=lambda: ["incident.triggered"])
    service: str | None = None
    title: str | None = None
    urgency: Literal["high", "low"] | None = None

    @field_validator("title")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"bad regular expression {value!r}: {exc}") from None
        return value

    @field_validator("event_types")
    @classmethod
    def _event_types(cls, value: list[str]) -> list[str]:
        for item in value:
            if not re.fullmatch(r"(incident|service|pagey)\.[a-z_]+", item):
                raise ValueError(f"unknown PagerDuty event type {item!r} (e.g. incident.triggered)")
        return value


class ScheduleTrigger(Strict):
    cron: str
    timezone: str = "UTC"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from croniter import croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"bad cron expression {value!r}: five fields, e.g. '0 7 * * *'")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone {value!r}") from None
        return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"bad regular expression {value!r}: {exc}") from None
    return value


class AlertmanagerTrigger(Strict):
    """One ``triggers.alertmanager`` entry: which alerts of an Alertmanager notification start a run.

    ``alertname`` and each ``labels`` value are regular expressions the whole value must match (a
    missing label never matches); ``status`` is the alert status that starts a run (a ``resolved``
    alert is always noted on the run its firing started). ``params`` map alert fields to run params,
    literally or as templates over ``alert`` (``labels``, ``annotations``, ``status``, ``fingerprint``,
    ``startsAt``, ``generatorURL``), rendered in the sandbox and checked against the param's
    type, pattern and enum: alert labels are untrusted input."""

    alertname: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    status: Literal["firing", "resolved"] = "firing"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("alertname")
    @classmethod
    def _name_regex(cls, value: str | None) -> str | None:
        return _check_regex(value) if value is not None else None

    @field_validator("labels")
    @classmethod
    def _label_regexes(cls, value: dict[str, str]) -> dict[str, str]:
        for label, pattern in value.items():
            if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", label):
                raise ValueError(f"bad label name {label!r}")
            _check_regex(pattern)
        return value


class Triggers(Strict):
    pagerduty: list[PagerDutyTrigger] = Field(default_factory=list)
    schedule: list[ScheduleTrigger] = Field(default_factory=list)
    alertmanager: list[AlertmanagerTrigger] = Field(default_factory=list)


class Approval(Strict):
    """How a gated step is decided. ``policy: none`` opts out and must say why."""

    policy: Literal["required", "none"] = "required"
    justification: str | None = None
    approvers: list[str] = Field(default_factory=list)
    min_approvals: int = Field(1, ge=1, le=5)
    two_person: bool = False
    timeout: Duration = 900.0
    on_denied: Literal["abort", "skip"] = "abort"
    precondition: str | None = None

    @model_validator(mode="after")
    def _opt_out(self) -> Approval:
        if self.policy == "none" and not (self.justification or "").strip():
            raise ValueError("approval policy none needs a justification")
        if self.policy == "required" and not self.approvers:
            raise ValueError("approval needs approvers: [role, ...] (or policy: none with a justification)")
        return self


class Step(Strict):
    id: str = Field(pattern=IDENT)
    title: str | None = None
    action: str
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    when: str | None = None
    approval: Approval | None = None
    retries: int = Field(0, ge=0, le=10)
    retry_delay: Duration = 2.0
    timeout: Duration | None = None
    on_failure: Literal["abort", "continue"] = "abort"
    evidence: list[str] = Field(default_factory=list)

    @property
    def label(self) -> str:
        return self.title or self.id

    @property
    def gated(self) -> bool:
        return self.approval is not None and self.approval.policy == "required"


class Playbook(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    title: str
    description: str = ""
    owner: str
    incident_channel: bool = False
    triggers: Triggers = Field(default_factory=Triggers)
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
    finally_: list[Step] = Field(default_factory=list, alias="finally")

    @field_validator("params")
    @classmethod
    def _param_names(cls, value: dict[str, ParamSpec]) -> dict[str, ParamSpec]:
        for name in value:
            if not re.fullmatch(IDENT, name):
                raise ValueError(f"param name {name!r} must match {IDENT}")
            if name in RESERVED_PARAMS:
                raise ValueError(f"param name {name!r} is reserved")
        return value

    def all_steps(self) -> list[Step]:
        return [*self.steps, *self.finally_]

    @property
    def flow_name(self) -> str:
        return self.name
