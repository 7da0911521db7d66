"""fake_cognito: issues and validates HMAC-signed (HS256, JWT-shaped) access tokens.

Other services check tokens without calling this one, with
`hippo_platform.services.fake_cognito.tokens.verify_token` and the same secret
(`secret_from_env()`); importing `tokens` starts nothing.
"""
