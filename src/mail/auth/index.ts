export { verifyAppPassword, hashAppPassword, checkAppPassword, DEFAULT_SCRYPT, type MailLogin } from './app-password.ts';
