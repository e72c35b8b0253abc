"""Webhooks set through the API: admin only, stored in the ``webhooks`` table, run by the sink's dispatcher.

A webhook URL is a request the server makes on the caller's behalf, so every route here needs the
admin role (a viewer gets 403, listing included: URLs and filters are outbound configuration). The
body is the configuration file's own model (``WebhookConfig``: filters by severity, camera, rule and
message kind, cooldown, timeout); the URL is checked after name resolution at set time (a 422
naming ``url``) and again at every delivery. Answers never carry the HMAC secret (``secret_set``
says whether one is set) nor the URL's path, query or credentials (they may hold a token).

The configuration file's webhooks are listed too, read-only (``source: config``): a stored webhook
may not take their name, and they cannot be changed or deleted here. Deleting a stored webhook
cancels its pending deliveries (state ``cancelled``; a message in flight at that moment may still
arrive once). The dispatcher in the sink actor picks every change up within a few seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi import Path as PathParam
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from trtseg.config.analytics import NAME_PATTERN
from trtseg.config.outbound import MessageKind, OutboundConfig, WebhookConfig
from trtseg.db.webhooks import StoredWebhook, WebhookExists, WebhookNotFound, WebhookStore
from trtseg.outbound.urlguard import GuardPolicy, OutboundUrlError, check_url, policy_from_config
from trtseg.outbound.webhooks import shown_url

from deployments.context import ApiContext, get_context
from deployments.models import Problem

logger = logging.getLogger(__name__)

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "Missing or wrong bearer token."},
    403: {"model": Problem, "description": "Webhooks need the admin role."},
    503: {"model": Problem, "description": "The event database is unavailable."},
}
EXAMPLE = {
    "name": "pager",
    "url": "https://hooks.example.com/trtseg",
    "secret": "a-long-random-key",
    "min_severity": "alert",
    "cameras": ["cam1"],
    "rules": [],
    "cooldown_s": 60,
}


class WebhookOut(BaseModel):
    """One webhook as the API shows it: no secret, the URL as scheme, host and port only."""

    name: str
    source: Literal["api", "config"] = Field(description="'api': stored, may be changed here; 'config': read-only.")
    read_only: bool
    active: bool = Field(description="Whether the dispatcher runs it (a stored one the configuration shadows: no).")
    url: str = Field(description="scheme://host[:port]/... (path, query and credentials hidden).")
    secret_set: bool = Field(description="Whether requests are signed (the secret itself is never shown).")
    min_severity: str
    cameras: list[str]
    rules: list[str]
    kinds: list[MessageKind]
    cooldown_s: float
    timeout_s: float
    verify_tls: bool
    revision: int | None = Field(default=None, description="Grows with every change (stored webhooks).")
    created_at: datetime | None = None
    updated_at: datetime | None = None


class WebhookDeleted(BaseModel):
    name: str
    cancelled_deliveries: int = Field(description="Its pending deliveries, now 'cancelled' in the outbox.")


def _out(config: WebhookConfig, stored: StoredWebhook | None, shadowed: bool = False) -> WebhookOut:
    return WebhookOut(
        name=config.name,
        source="api" if stored is not None else "config",
        read_only=stored is None,
        active=not shadowed,
        url=shown_url(config.url.get_secret_value()),
        secret_set=config.secret is not None and bool(config.secret.get_secret_value()),
        min_severity=config.min_severity,
        cameras=list(config.cameras),
        rules=list(config.rules),
        kinds=list(config.kinds),
        cooldown_s=config.cooldown_s,
        timeout_s=config.timeout_s,
        verify_tls=config.verify_tls,
        revision=None if stored is None else stored.revision,
        created_at=None if stored is None else stored.created_at,
        updated_at=None if stored is None else stored.updated_at,
    )


async def _call(function: Any, *args: Any) -> Any:
    """A store call in a worker thread: a missing or taken name is the caller's (404, 409), else 503."""
    try:
        return await run_in_threadpool(function, *args)
    except WebhookNotFound as error:
        raise HTTPException(404, detail=f"webhook '{error.args[0]}' not found") from None
    except WebhookExists as error:
        raise HTTPException(409, detail=f"{error} (change it with PUT /webhooks/{{name}})") from None
    except Exception as error:  # database down or refusing: the API stays up and says so
        logger.warning("webhook store call failed function=%s error=%s", function.__name__, type(error).__name__)
        raise HTTPException(
            503, detail=f"event database unavailable: {type(error).__name__}", headers={"Retry-After": "2"}
        ) from None


def _refused(field: str, message: str, kind: str = "value_error") -> HTTPException:
    return HTTPException(422, detail=[{"loc": ["body", field], "msg": message, "type": kind}])


def build_router(write: Any, configured: Sequence[WebhookConfig] = ()) -> APIRouter:
    """``write``: the admin dependency; ``configured``: the configuration file's webhooks (read-only)."""
    router = APIRouter(tags=["webhooks"], responses=ERRORS, dependencies=[Depends(write)])
    from_config = {hook.name: hook for hook in configured}

    def store(ctx: ApiContext) -> WebhookStore:
        return WebhookStore(ctx.store.engine)

    def policy(ctx: ApiContext) -> GuardPolicy:
        # Without an outbound policy from the system (tests, tools): the defaults, loopback refused.
        return ctx.outbound if isinstance(ctx.outbound, GuardPolicy) else policy_from_config(OutboundConfig())

    async def checked(ctx: ApiContext, config: WebhookConfig) -> None:
        """The URL after name resolution under the system's policy; a path on the server is refused."""
        if config.ca_file is not None:
            raise _refused("ca_file", "ca_file is a path on the server: set it in the configuration file instead")
        try:
            await run_in_threadpool(check_url, config.url.get_secret_value(), field="url", policy=policy(ctx))
        except OutboundUrlError as error:
            raise _refused("url", error.reason, "value_error.url_refused") from None

    def read_only(name: str) -> HTTPException:
        return HTTPException(
            409, detail=f"webhook '{name}' is defined in the configuration file (outbound.webhooks): read-only here"
        )

    def name_param() -> Any:
        return PathParam(pattern=NAME_PATTERN, max_length=64, description="Webhook name.")

    @router.get("/webhooks", response_model=list[WebhookOut], summary="List webhooks")
    async def list_webhooks(ctx: ApiContext = Depends(get_context)) -> list[WebhookOut]:
        stored = await _call(store(ctx).list)
        out = [_out(hook, None) for hook in configured]
        out += [_out(hook.config, hook, shadowed=hook.name in from_config) for hook in stored]
        return out

    @router.get("/webhooks/{name}", response_model=WebhookOut, summary="One webhook")
    async def get_webhook(name: str = name_param(), ctx: ApiContext = Depends(get_context)) -> WebhookOut:
        if name in from_config:
            return _out(from_config[name], None)
        found = await _call(store(ctx).get, name)
        if found is None:
            raise HTTPException(404, detail=f"webhook '{name}' not found")
        return _out(found.config, found)

    @router.post(
        "/webhooks",
        response_model=WebhookOut,
        status_code=201,
        summary="Add a webhook",
        description="The body is a webhook as in the configuration file (`outbound.webhooks[]`). The URL must be "
        "http(s) and resolve to an address the server may reach (link-local and metadata addresses never; "
        "loopback and the cluster's ports only where `outbound` allows): else a 422 naming `url`.",
        responses={409: {"model": Problem, "description": "The name is taken."}},
    )
    async def add_webhook(
        config: WebhookConfig = Body(examples=[EXAMPLE]), ctx: ApiContext = Depends(get_context)
    ) -> WebhookOut:
        if config.name in from_config:
            raise read_only(config.name)
        await checked(ctx, config)
        added = await _call(store(ctx).add, config)
        logger.info("webhook added name=%s url=%s", config.name, shown_url(config.url.get_secret_value()))
        return _out(added.config, added)

    @router.put(
        "/webhooks/{name}",
        response_model=WebhookOut,
        summary="Replace a webhook",
        description="The body is the whole webhook; its name must be the path's. Leaving `secret` out keeps the "
        'stored secret; `"secret": null` removes it (requests unsigned). Pending deliveries go to the new URL.',
        responses={404: {"model": Problem}, 409: {"model": Problem, "description": "A configuration webhook."}},
    )
    async def put_webhook(
        config: WebhookConfig = Body(examples=[EXAMPLE]),
        name: str = name_param(),
        ctx: ApiContext = Depends(get_context),
    ) -> WebhookOut:
        if config.name != name:
            raise _refused("name", f"body name '{config.name}' differs from the path's '{name}'")
        if name in from_config:
            raise read_only(name)
        await checked(ctx, config)
        hooks = store(ctx)
        if "secret" not in config.model_fields_set:
            current = await _call(hooks.get, name)
            if current is None:
                raise HTTPException(404, detail=f"webhook '{name}' not found")
            config = config.model_copy(update={"secret": current.config.secret})
        replaced = await _call(hooks.replace, config)
        logger.info("webhook replaced name=%s url=%s", name, shown_url(config.url.get_secret_value()))
        return _out(replaced.config, replaced)

    @router.delete(
        "/webhooks/{name}",
        response_model=WebhookDeleted,
        summary="Delete a webhook",
        description="Its pending deliveries are cancelled (kept in the outbox as 'cancelled', counted, pruned "
        "like delivered ones); a message being sent at that moment may still arrive once.",
        responses={404: {"model": Problem}, 409: {"model": Problem, "description": "A configuration webhook."}},
    )
    async def delete_webhook(name: str = name_param(), ctx: ApiContext = Depends(get_context)) -> WebhookDeleted:
        if name in from_config:
            raise read_only(name)
        cancelled = await _call(store(ctx).delete, name)
        logger.info("webhook deleted name=%s cancelled_deliveries=%d", name, cancelled)
        return WebhookDeleted(name=name, cancelled_deliveries=cancelled)

    return router
