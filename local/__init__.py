"""The embedded stack: the synthesized CDK app running on one machine, with moto as the AWS API.

``python -m local {demo,up,down,status}``; see docs/local.md.
"""
