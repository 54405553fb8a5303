-- 0002: the owner of each operation (operation.Operation.Owner), for
-- List's owner filter. Like idempotency_key it is a column, not a field of
-- doc: written by Create, never by Update. bytea, so that an owner is any
-- string, NUL included (text refuses NUL). NULL: no owner.
ALTER TABLE arr_operations ADD COLUMN owner bytea;
-- Operations written before this migration by a build that kept Owner in
-- doc keep their owner.
UPDATE arr_operations SET owner = convert_to(doc->>'owner', 'UTF8')
WHERE doc->>'owner' IS NOT NULL AND doc->>'owner' <> '';
-- List with an owner walks the owner's (owner, id) range from the cursor.
CREATE INDEX arr_operations_owner_id ON arr_operations (owner, id) WHERE owner IS NOT NULL;
