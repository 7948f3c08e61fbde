"""The platform's workflows, one sub-package per domain: review/ (专家论证), later push/, deals/, calls/."""
