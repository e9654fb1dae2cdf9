"""alerts: notices that a notified alert resolved

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 23:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.models

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resolve_notified_at', server.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('resolve_notify_attempts', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_column('resolve_notify_attempts')
        batch_op.drop_column('resolve_notified_at')
