"""The findings rules: one module per family, each rule `check(evidence, settings, severity)`.

`RULE_CHECKS` maps each rule of `thresholds.RULES` to its check (the engine runs
them in the table's order).
"""
