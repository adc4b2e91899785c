"""Runner plugins written in the tests, as a user would write one."""
