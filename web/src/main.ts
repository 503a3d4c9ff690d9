// The page's entry point: log in (or resume the stored session), then run
// the board. When the session ends — logout, or a refresh token the service
// refuses — everything stops and the login form comes back.

import './style.css';

import { Api } from './api';
import { App } from './app';
import { loginView } from './login';
import type { User } from './types';

const root = document.getElementById('root') as HTMLElement;
const api = new Api();
let app: App | null = null;

function showLogin(notice = ''): void {
  app?.stop();
  app = null;
  root.replaceChildren(loginView(api, notice, showApp));
  (root.querySelector('#login-email') as HTMLInputElement | null)?.focus();
}

function showApp(user: User): void {
  app?.stop();
  app = new App(api, user);
  root.replaceChildren(app.element);
  app.start().catch((error) => console.error('start', error));
}

api.onSessionEnded = (reason) => showLogin(reason);

if (api.user) showApp(api.user);
else showLogin();
