-- 0003: the callback outbox index (opstore/driver.Outbox). callback_due
-- repeats doc's callbackDueAt (operation.Operation.CallbackDueAt), as
-- expires_at repeats expiresAt: every write of doc writes it in the same
-- statement. NULL: the operation owes no callback.
ALTER TABLE arr_operations ADD COLUMN callback_due timestamptz;
-- Operations written before this migration by a build that had
-- CallbackDueAt in doc without the column are indexed too.
UPDATE arr_operations SET callback_due = (doc->>'callbackDueAt')::timestamptz
WHERE doc->>'callbackDueAt' IS NOT NULL;
-- DueCallbacks walks callback_due up to its now.
CREATE INDEX arr_operations_callback_due ON arr_operations (callback_due) WHERE callback_due IS NOT NULL;
