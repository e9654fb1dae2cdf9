"""telemetry history, alerts and console settings

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 19:15:33.990588
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.models

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('app_settings',
    sa.Column('key', sa.String(length=64), nullable=False),
    sa.Column('value', sa.JSON(), nullable=False),
    sa.Column('updated_at', server.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('updated_by_id', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['updated_by_id'], ['users.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('key')
    )
    op.create_table('alerts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('rule', sa.String(length=32), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('opened_at', server.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('resolved_at', server.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_at', server.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('acknowledged_by_id', sa.Integer(), nullable=True),
    sa.Column('ack_comment', sa.String(length=500), nullable=False),
    sa.Column('notified_at', server.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('notify_attempts', sa.Integer(), nullable=False),
    sa.Column('notify_error', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['acknowledged_by_id'], ['users.id'], ),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index('ix_alerts_device_rule', ['device_id', 'rule'], unique=False)
        batch_op.create_index('ix_alerts_opened', ['opened_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_alerts_resolved_at'), ['resolved_at'], unique=False)

    op.create_table('telemetry_samples',
    sa.Column('device_id', sa.Integer(), nullable=False),
    sa.Column('at', server.models.UtcDateTime(timezone=True), nullable=False),
    sa.Column('online', sa.Boolean(), nullable=False),
    sa.Column('playing', sa.Boolean(), nullable=False),
    sa.Column('cpu_temp_c', sa.Double(), nullable=True),
    sa.Column('disk_used_percent', sa.Double(), nullable=True),
    sa.Column('cache_bytes', sa.BigInteger(), nullable=True),
    sa.Column('volume_percent', sa.Integer(), nullable=True),
    sa.Column('amplifier_on', sa.Boolean(), nullable=True),
    sa.Column('clock_offset_ms', sa.Double(), nullable=True),
    sa.Column('link_quality_percent', sa.Integer(), nullable=True),
    sa.Column('outbox_pending', sa.Integer(), nullable=True),
    sa.ForeignKeyConstraint(['device_id'], ['devices.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('device_id', 'at')
    )


def downgrade() -> None:
    op.drop_table('telemetry_samples')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts_resolved_at'))
        batch_op.drop_index('ix_alerts_opened')
        batch_op.drop_index('ix_alerts_device_rule')

    op.drop_table('alerts')
    op.drop_table('app_settings')
