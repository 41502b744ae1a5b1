FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY contract ./contract
EXPOSE 4000
USER node
CMD ["node", "--import", "tsx", "src/main.ts"]
