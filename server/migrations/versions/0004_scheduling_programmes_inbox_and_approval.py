"""scheduling, programmes, inbox, approval and area aliases

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 17:24:55.996131
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import server.models

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('area_aliases',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('area_id', sa.Integer(), nullable=False),
    sa.Column('note', sa.String(length=200), nullable=False),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('code')
    )
    with op.batch_alter_table('area_aliases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_area_aliases_area_id'), ['area_id'], unique=False)

    op.create_table('broadcast_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('broadcast_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('announcement_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['announcement_id'], ['announcements.id'], ),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('broadcast_id', 'position')
    )
    with op.batch_alter_table('broadcast_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_broadcast_items_broadcast_id'), ['broadcast_id'], unique=False)

    op.create_table('inbox_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('bulletin_id', sa.Integer(), nullable=False),
    sa.Column('area_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('broadcast_id', sa.Integer(), nullable=True),
    sa.Column('decided_by', sa.Integer(), nullable=True),
    sa.Column('decided_at', server.models.UtcDateTime(timezone=True), nullable=True),
    sa.Column('created_at', server.models.UtcDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['area_id'], ['areas.id'], ),
    sa.ForeignKeyConstraint(['broadcast_id'], ['broadcasts.id'], ),
    sa.ForeignKeyConstraint(['bulletin_id'], ['broadcasts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['decided_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('bulletin_id', 'area_id')
    )
    with op.batch_alter_table('inbox_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inbox_entries_area_id'), ['area_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_inbox_entries_bulletin_id'), ['bulletin_id'], unique=False)

    with op.batch_alter_table('announcements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('category', sa.String(length=32), server_default='thong-bao', nullable=False))
        batch_op.add_column(sa.Column('language', sa.String(length=8), server_default='vi', nullable=False))

    with op.batch_alter_table('areas', schema=None) as batch_op:
        batch_op.add_column(sa.Column('latitude', sa.Double(), nullable=True))
        batch_op.add_column(sa.Column('longitude', sa.Double(), nullable=True))

    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('title', sa.String(length=300), server_default='', nullable=False))
        batch_op.add_column(sa.Column('area_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('mode', sa.String(length=16), server_default='direct', nullable=False))
        batch_op.add_column(sa.Column('timing', sa.String(length=16), server_default='once', nullable=False))
        batch_op.add_column(sa.Column('rrule', sa.String(length=500), server_default='', nullable=False))
        batch_op.add_column(sa.Column('start_local', sa.String(length=19), server_default='', nullable=False))
        batch_op.add_column(sa.Column('tz', sa.String(length=64), server_default='Asia/Ho_Chi_Minh', nullable=False))
        batch_op.add_column(sa.Column('valid_until', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('exdates', sa.JSON(), server_default='[]', nullable=False))
        batch_op.add_column(sa.Column('holiday_rule', sa.String(length=8), server_default='ignore', nullable=False))
        batch_op.add_column(sa.Column('repeat_every_min', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('repeat_count', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('repeat_until', server.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('slot_minutes', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('on_preempt', sa.String(length=8), server_default='skip', nullable=False))
        batch_op.add_column(sa.Column('exercise', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('submitted_at', server.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('reviewed_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('reviewed_at', server.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('review_comment', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('confirmed_by_typing', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('cancelled_by', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('cancelled_at', server.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('cancel_reason', sa.Text(), server_default='', nullable=False))
        batch_op.add_column(sa.Column('revision', sa.Integer(), server_default='1', nullable=False))
        batch_op.add_column(sa.Column('updated_at', server.models.UtcDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_broadcasts_area_id'), ['area_id'], unique=False)
        batch_op.create_foreign_key('fk_broadcasts_cancelled_by', 'users', ['cancelled_by'], ['id'])
        batch_op.create_foreign_key('fk_broadcasts_reviewed_by', 'users', ['reviewed_by'], ['id'])
        batch_op.create_foreign_key('fk_broadcasts_area_id', 'areas', ['area_id'], ['id'])


    # Existing broadcasts: approved single-item programmes owned by their announcement's area.
    op.execute("UPDATE broadcasts SET status = 'approved' WHERE status = 'scheduled'")
    op.execute("UPDATE broadcasts SET"
               " title = (SELECT a.title FROM announcements a WHERE a.id = broadcasts.announcement_id),"
               " area_id = (SELECT a.area_id FROM announcements a WHERE a.id = broadcasts.announcement_id)")
    op.execute("INSERT INTO broadcast_items (broadcast_id, position, announcement_id)"
               " SELECT id, 0, announcement_id FROM broadcasts")

def downgrade() -> None:
    op.execute("UPDATE broadcasts SET status = 'scheduled' WHERE status = 'approved'")
    with op.batch_alter_table('broadcasts', schema=None) as batch_op:
        batch_op.drop_constraint('fk_broadcasts_area_id', type_='foreignkey')
        batch_op.drop_constraint('fk_broadcasts_reviewed_by', type_='foreignkey')
        batch_op.drop_constraint('fk_broadcasts_cancelled_by', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_broadcasts_area_id'))
        batch_op.drop_column('updated_at')
        batch_op.drop_column('revision')
        batch_op.drop_column('cancel_reason')
        batch_op.drop_column('cancelled_at')
        batch_op.drop_column('cancelled_by')
        batch_op.drop_column('confirmed_by_typing')
        batch_op.drop_column('review_comment')
        batch_op.drop_column('reviewed_at')
        batch_op.drop_column('reviewed_by')
        batch_op.drop_column('submitted_at')
        batch_op.drop_column('exercise')
        batch_op.drop_column('on_preempt')
        batch_op.drop_column('slot_minutes')
        batch_op.drop_column('repeat_until')
        batch_op.drop_column('repeat_count')
        batch_op.drop_column('repeat_every_min')
        batch_op.drop_column('holiday_rule')
        batch_op.drop_column('exdates')
        batch_op.drop_column('valid_until')
        batch_op.drop_column('tz')
        batch_op.drop_column('start_local')
        batch_op.drop_column('rrule')
        batch_op.drop_column('timing')
        batch_op.drop_column('mode')
        batch_op.drop_column('area_id')
        batch_op.drop_column('title')

    with op.batch_alter_table('areas', schema=None) as batch_op:
        batch_op.drop_column('longitude')
        batch_op.drop_column('latitude')

    with op.batch_alter_table('announcements', schema=None) as batch_op:
        batch_op.drop_column('language')
        batch_op.drop_column('category')

    with op.batch_alter_table('inbox_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inbox_entries_bulletin_id'))
        batch_op.drop_index(batch_op.f('ix_inbox_entries_area_id'))

    op.drop_table('inbox_entries')
    with op.batch_alter_table('broadcast_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_broadcast_items_broadcast_id'))

    op.drop_table('broadcast_items')
    with op.batch_alter_table('area_aliases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_area_aliases_area_id'))

    op.drop_table('area_aliases')
