"""This machine: its CPU, the threads Hearth may use, and the doctor's report."""
