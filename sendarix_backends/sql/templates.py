"""Templates and their versions in SQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.sql.engine import dialect_insert
from sendarix_backends.sql.schema import UtcTimestamp, metadata
from sendarix_backends.templates.model import Template, TemplateVersion

if TYPE_CHECKING:
    from sendarix_backends.sql.store import SqlStore

__all__ = ["SqlTemplateStore", "template_versions", "templates"]

templates = sa.Table(
    "templates",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("published_version", sa.Integer, nullable=False),
    sa.Column("latest_version", sa.Integer, nullable=False),
    sa.Column("created_at", UtcTimestamp, nullable=False),
    sa.Column("updated_at", UtcTimestamp, nullable=False),
)

template_versions = sa.Table(
    "template_versions",
    metadata,
    sa.Column(
        "template_name",
        sa.Text,
        sa.ForeignKey("templates.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("subject", sa.Text, nullable=True),
    sa.Column("html", sa.Text, nullable=True),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("created_at", UtcTimestamp, nullable=False),
    sa.Column("published_at", UtcTimestamp, nullable=True),
)


class SqlTemplateStore:
    """``TemplateStore`` on the database of a ``SqlStore``."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def create_template(self, template: Template) -> bool:
        return await self._store.run_transaction(
            "create_template", _create_template, template, write=True
        )

    async def get_template(self, name: str) -> Template | None:
        return await self._store.run_transaction(
            "get_template", _get_template, name, write=False
        )

    async def list_templates(self, limit: int, after: str | None) -> list[Template]:
        return await self._store.run_transaction(
            "list_templates", _list_templates, limit, after, write=False
        )

    async def add_version(
        self,
        name: str,
        *,
        subject: str | None,
        html: str | None,
        text: str | None,
        now: datetime,
    ) -> Template | None:
        parts = {"subject": subject, "html": html, "text": text}
        return await self._store.run_transaction(
            "add_template_version", _add_version, name, parts, now, write=True
        )

    async def publish(self, name: str, version: int, now: datetime) -> Template | None:
        return await self._store.run_transaction(
            "publish_template", _publish, name, version, now, write=True
        )

    async def delete_template(self, name: str) -> bool:
        return await self._store.run_transaction(
            "delete_template", _delete_template, name, write=True
        )

    async def get_published(self, name: str) -> TemplateVersion | None:
        return await self._store.run_transaction(
            "get_published_template", _get_published, name, write=False
        )


def _create_template(connection: Connection, template: Template) -> bool:
    statement = (
        dialect_insert(connection, templates)
        .values(
            name=template.name,
            published_version=template.published_version,
            latest_version=template.latest.version,
            created_at=template.created_at,
            updated_at=template.updated_at,
        )
        .on_conflict_do_nothing(index_elements=[templates.c.name])
        .returning(templates.c.name)
    )
    # RETURNING tells whether the row was inserted on both databases, where
    # rowcount after ON CONFLICT is not reliable with psycopg.
    if connection.execute(statement).first() is None:
        return False
    connection.execute(
        sa.insert(template_versions),
        [_version_row(template.name, version) for version in template.versions],
    )
    return True


def _get_template(connection: Connection, name: str) -> Template | None:
    row = (
        connection.execute(sa.select(templates).where(templates.c.name == name))
        .mappings()
        .first()
    )
    if row is None:
        return None
    return _load_templates(connection, [row])[0]


def _list_templates(
    connection: Connection, limit: int, after: str | None
) -> list[Template]:
    statement = sa.select(templates).order_by(templates.c.name).limit(limit)
    if after is not None:
        statement = statement.where(templates.c.name > after)
    rows = connection.execute(statement).mappings().all()
    return _load_templates(connection, rows)


def _load_templates(
    connection: Connection, rows: Sequence[Mapping[Any, Any]]
) -> list[Template]:
    names = [row["name"] for row in rows]
    statement = (
        sa.select(template_versions)
        .where(template_versions.c.template_name.in_(names))
        .order_by(template_versions.c.template_name, template_versions.c.version)
    )
    versions: dict[str, list[TemplateVersion]] = {name: [] for name in names}
    for version_row in connection.execute(statement).mappings():
        versions[version_row["template_name"]].append(_version_from_row(version_row))
    return [
        Template(
            name=row["name"],
            published_version=row["published_version"],
            versions=tuple(versions[row["name"]]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
        )
        for row in rows
    ]


def _add_version(
    connection: Connection, name: str, parts: Mapping[str, str | None], now: datetime
) -> Template | None:
    # The update locks the template's row, so concurrent updates number
    # their versions one after the other.
    bump = (
        sa.update(templates)
        .where(templates.c.name == name)
        .values(latest_version=templates.c.latest_version + 1, updated_at=now)
    )
    if connection.execute(bump).rowcount == 0:
        return None
    number = connection.execute(
        sa.select(templates.c.latest_version).where(templates.c.name == name)
    ).scalar_one()
    version = TemplateVersion(
        version=number,
        subject=parts["subject"],
        html=parts["html"],
        text=parts["text"],
        created_at=now,
    )
    connection.execute(sa.insert(template_versions), _version_row(name, version))
    return _get_template(connection, name)


def _publish(
    connection: Connection, name: str, version: int, now: datetime
) -> Template | None:
    statement = (
        sa.update(templates)
        .where(templates.c.name == name)
        .values(published_version=version, updated_at=now)
    )
    if connection.execute(statement).rowcount == 0:
        return None
    connection.execute(
        sa.update(template_versions)
        .where(
            template_versions.c.template_name == name,
            template_versions.c.version == version,
        )
        .values(published_at=now)
    )
    return _get_template(connection, name)


def _delete_template(connection: Connection, name: str) -> bool:
    connection.execute(
        sa.delete(template_versions).where(template_versions.c.template_name == name)
    )
    statement = sa.delete(templates).where(templates.c.name == name)
    return connection.execute(statement).rowcount > 0


def _get_published(connection: Connection, name: str) -> TemplateVersion | None:
    statement = sa.select(template_versions).join(
        templates,
        sa.and_(
            templates.c.name == template_versions.c.template_name,
            templates.c.published_version == template_versions.c.version,
        ),
    )
    row = (
        connection.execute(statement.where(templates.c.name == name)).mappings().first()
    )
    return None if row is None else _version_from_row(row)


def _version_row(name: str, version: TemplateVersion) -> dict[str, Any]:
    return {
        "template_name": name,
        "version": version.version,
        "subject": version.subject,
        "html": version.html,
        "text": version.text,
        "created_at": version.created_at,
        "published_at": version.published_at,
    }


def _version_from_row(row: Mapping[Any, Any]) -> TemplateVersion:
    return TemplateVersion(
        version=row["version"],
        subject=row["subject"],
        html=row["html"],
        text=row["text"],
        created_at=row["created_at"],
        published_at=row["published_at"],
    )
