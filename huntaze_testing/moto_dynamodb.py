"""Make moto's DynamoDB keep two promises the real service keeps, for tests and benchmarks.

1. **Atomic conditional writes.** moto checks a condition and then writes as two steps,
   and its server handles requests in threads: two writers could both pass a condition
   that only one may pass. One re-entrant lock around PutItem, UpdateItem, DeleteItem
   and TransactWriteItems makes each of them atomic, as DynamoDB does; GetItem and
   Query take it too, so no reader sees an item UpdateItem has created but not yet set.
2. **Transactions that cost what they touch.** moto backs a TransactWriteItems up by
   deep-copying every table it names, and rolls a cancelled one back by putting the
   copies back: O(table size) per transaction, and a rollback also undoes whatever other
   clients wrote meanwhile. Here the backup is the touched items only, and a rollback
   restores just those.
3. **Queries that cost what they read.** moto answers a Query on a table by listing and
   sorting every item of the table, then keeping the partition asked for: O(table size)
   under the lock of (1), where DynamoDB reads the one partition. Here a Query on a
   table (not an index) lists that partition only.

``install()`` patches moto in this process (the in-process ``mock_aws`` backend and a
``ThreadedMotoServer`` started here alike) and returns a function that undoes it.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from functools import wraps
from typing import Any


def install() -> Callable[[], None]:
    """Patch moto's DynamoDB backend; returns the undo."""
    import moto.dynamodb.models as models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table

    lock = threading.RLock()
    saved: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, name: str, new: Any) -> None:
        saved.append((owner, name, owner.__dict__.get(name)))
        setattr(owner, name, new)

    def locked(owner: Any, name: str) -> None:
        unlocked = getattr(owner, name)

        @wraps(unlocked)
        def under_lock(*args: Any, **kwargs: Any) -> Any:
            with lock:
                return unlocked(*args, **kwargs)

        patch(owner, name, under_lock)

    for name in ("put_item", "update_item", "delete_item"):
        locked(Table if name == "put_item" else DynamoDBBackend, name)
    # UpdateItem creates a new item with its key first and sets its attributes after:
    # a reader between the two would see an item DynamoDB never shows half written.
    for name in ("get_item", "query"):
        locked(DynamoDBBackend, name)

    real_deepcopy = copy.deepcopy

    class _NoTableCopies:
        """``copy`` as moto's module sees it: tables are not copied (see ``transact``)."""

        @staticmethod
        def deepcopy(value: Any, memo: Any = None) -> Any:
            return value if isinstance(value, Table) else real_deepcopy(value, memo)

    original_transact = DynamoDBBackend.transact_write_items

    def transact(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        with lock:
            backup = []
            for entry in transact_items:
                _, op = next(iter(entry.items()))
                table = self.get_table(op["TableName"])
                if "Item" in op:
                    key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                    if table.range_key_attr is not None:
                        key[table.range_key_attr] = op["Item"][table.range_key_attr]
                else:
                    key = op["Key"]
                current = self.get_item(op["TableName"], key)
                before = real_deepcopy(current.to_json()["Attributes"]) if current else None
                backup.append((op["TableName"], key, before))
            try:
                original_transact(self, transact_items)
            except Exception:
                for table_name, key, before in reversed(backup):
                    if before is None:
                        if self.get_item(table_name, key) is not None:
                            self.delete_item(table_name, key)
                    else:
                        self.put_item(table_name, before)
                raise

    patch(models, "copy", _NoTableCopies)
    patch(DynamoDBBackend, "transact_write_items", transact)

    asked = threading.local()  # the partition the Query running in this thread reads
    table_query = Table.query
    table_items = Table.all_items

    def query(self: Table, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = args[6] if len(args) > 6 else kwargs.get("index_name")
        asked.partition = hash_key if index_name is None and self.range_key_attr else None
        try:
            return table_query(self, hash_key, *args, **kwargs)
        finally:
            asked.partition = None

    def all_items(self: Table) -> Any:
        partition = getattr(asked, "partition", None)
        if partition is None:
            return table_items(self)
        return sorted(self.items.get(partition, {}).values(), key=lambda item: item.range_key)

    patch(Table, "query", query)
    patch(Table, "all_items", all_items)

    def undo() -> None:
        for owner, name, old in reversed(saved):
            if old is None:
                delattr(owner, name)
            else:
                setattr(owner, name, old)
        saved.clear()

    return undo
