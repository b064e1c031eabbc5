-- Share access lists (Graph's allowedUsers and allowedGroups). A row per member; deleting
-- the share (or its printer) deletes its list.
CREATE TABLE share_members (
    share_id   TEXT    NOT NULL REFERENCES shares(id) ON DELETE CASCADE,
    kind       TEXT    NOT NULL CHECK (kind IN ('user', 'group')),
    member_id  TEXT    NOT NULL,
    added      INTEGER NOT NULL,
    PRIMARY KEY (share_id, kind, member_id)
) STRICT;
