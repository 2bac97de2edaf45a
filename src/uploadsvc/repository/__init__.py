"""The data layer: every query and bulk write, one module per feature.

Services call these functions; no other module builds SQL.
"""
