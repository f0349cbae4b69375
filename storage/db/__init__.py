"""The database engine: connections, transactions and the loop guard, SQL helpers, migrations and pre-flight checks."""
