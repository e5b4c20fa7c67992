"""graphql"""
