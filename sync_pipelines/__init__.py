"""Keeps IoT device inventories and state in sync into a relational store, observably."""
