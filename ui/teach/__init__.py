"""Teach in the window: the panel that trains on corrections, shows the gate's report
(base beside taught for every changed answer) and switches or rolls back versions."""
