// A development OpenID provider (the npm package oidc-provider) for the console's tests and
// the compose demo, on $HOST:$PORT (127.0.0.1 unless set) with one client. Its development login form signs in whoever types an
// address. For the forged-token test, an ID token issued to an address starting "forger"
// leaves with its email claim rewritten to $FORGE_AS and the original signature.
import Provider from 'oidc-provider';

const port = Number(process.env.PORT);
const issuer = process.env.ISSUER || `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: process.env.CLIENT_ID,
    client_secret: process.env.CLIENT_SECRET,
    redirect_uris: [process.env.REDIRECT_URI],
    post_logout_redirect_uris: [process.env.REDIRECT_URI.replace(/\/auth\/callback$/, '/')],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'] },
  // Claims in the ID token itself, as Google puts the address there.
  conformIdTokenClaims: false,
  features: { devInteractions: { enabled: true } },
  pkce: { required: () => true },
  async findAccount(ctx, id) {
    return { accountId: id, async claims() { return { sub: id, email: id, email_verified: true }; } };
  },
});
provider.proxy = false;

provider.use(async (ctx, next) => {
  await next();
  const body = ctx.body;
  if (ctx.path === '/token' && body && typeof body === 'object' && body.id_token) {
    const [h, p, s] = body.id_token.split('.');
    const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
    if (process.env.FORGE_AS && String(claims.email).startsWith('forger')) {
      claims.email = process.env.FORGE_AS;
      claims.sub = process.env.FORGE_AS;
      body.id_token = [h, Buffer.from(JSON.stringify(claims)).toString('base64url'), s].join('.');
    }
  }
});

provider.listen(port, process.env.HOST || '127.0.0.1', () => console.log(`listening ${issuer}`));
