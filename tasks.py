"""Entry points: ``invoke --list`` shows them all, ``invoke TASK --help`` explains one."""
from invoke import task
