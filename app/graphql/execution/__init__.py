"""graphql/execution"""
