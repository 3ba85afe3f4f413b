-- The Claws waiting on a message through claw__ask (a JSON list), kept with it so that the loop and
-- depth guards hold after a restart and across hosts.
ALTER TABLE messages ADD COLUMN chain TEXT NOT NULL DEFAULT '[]';
