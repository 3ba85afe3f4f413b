-- The lease epoch a message was claimed under: its acknowledgement commits only under the same one.
ALTER TABLE messages ADD COLUMN epoch bigint;
