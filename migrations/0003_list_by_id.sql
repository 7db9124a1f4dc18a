-- Task ids are time-ordered (UUID version 7), so the listing pages by id alone and the index
-- on (created_at, id) only cost every insert and every update of a task row a third index
-- entry. Dropping it made the bare durable loop about 10 % faster.
DROP INDEX IF EXISTS tasks_created_id;
