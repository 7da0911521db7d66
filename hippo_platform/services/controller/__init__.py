"""controller: the control-plane API (accounts, indexes) in front of a cell.

It keeps no state of its own: the cell it calls (fake_cell, or a real one through
`CONTROL_PLANE_URL_OVERRIDE`) is the one source of truth, so the two can never
disagree about which accounts and indexes exist.
"""
