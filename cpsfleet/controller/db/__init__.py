"""The controller's database: one way to open it, the repositories that hold every SQL
statement, the migrations."""
