"""The Keys page: a key made there is shown once, listed by its prefix, limited, and revoked."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .admin_client import admin_settings, post, running, sign_in

pytestmark = pytest.mark.anyio
key_store = pytest.importorskip("oai2ollama.key_store")


async def test_a_key_is_shown_once_listed_by_prefix_and_revoked(tmp_path: Path) -> None:
    async with running(admin_settings(f"sqlite:///{tmp_path / 'a.db'}")) as (app, client):
        await sign_in(client)
        made = await post(
            client, "/admin/keys",
            {"name": "ci <bot>", "models": "gpt-test, local/*", "tokens_per_day": "100000", "requests_per_minute": "60",
             "expires": "2099-01-01T00:00"},
            page="/admin/keys",
        )  # fmt: skip
        assert made.status_code == 200, made.text
        key = re.search(r'<code id="new-key">([^<]+)</code>', made.text).group(1)  # type: ignore[union-attr]
        assert key.startswith(key_store.KEY_PREFIX) and 'data-copy="new-key"' in made.text
        await app.state.shared.poll()  # what every process does within a second
        assert (await client.get("/api/tags", headers={"authorization": f"Bearer {key}"})).status_code == 200
        listing = (await client.get("/admin/keys")).text
        assert key not in listing and key[: key_store.PREFIX_LENGTH] + "…" in listing
        assert 'data-key="ci &lt;bot&gt;" data-state="active"' in listing
        assert "gpt-test, local/*" in listing and "100,000 tokens/day" in listing and "2099-01-01" in listing
        again = await post(client, "/admin/keys", {"name": "ci <bot>"}, page="/admin/keys")
        assert again.status_code == 400 and "exists already" in again.text
        bad = await post(client, "/admin/keys", {"name": "x", "tokens_per_day": "-5"}, page="/admin/keys")
        assert bad.status_code == 400 and "positive" in bad.text
        revoked = await post(client, "/admin/keys/revoke", {"name": "ci <bot>"}, page="/admin/keys")
        assert revoked.status_code == 303
        assert 'data-key="ci &lt;bot&gt;" data-state="revoked"' in (await client.get("/admin/keys")).text
        await app.state.shared.poll()
        assert (await client.get("/api/tags", headers={"authorization": f"Bearer {key}"})).status_code == 401
        assert (await client.post("/admin/keys/revoke", data={"name": "ci <bot>"})).status_code == 403  # no CSRF
